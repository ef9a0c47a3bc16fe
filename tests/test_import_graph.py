"""Dependencies in daemon/ point one way: no module imports, directly or through others, a
module that imports it back. An import inside a function counts (it runs, only later); one
under `if TYPE_CHECKING:` does not (it never runs)."""

from __future__ import annotations

import ast
from pathlib import Path

DAEMON = Path(__file__).resolve().parent.parent / "daemon"


def _modules(root: Path) -> dict[str, Path]:
    found = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imported(node: ast.AST, package: str) -> list[str]:
    """The dotted names an import statement may load (a submodule, else its package)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    assert isinstance(node, ast.ImportFrom)
    base = node.module or ""
    if node.level:
        parent = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join([*parent, base] if base else parent)
    return [f"{base}.{alias.name}" for alias in node.names] + [base]


def _type_checking_only(tree: ast.Module) -> set[ast.AST]:
    skipped: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in (
            "TYPE_CHECKING",
            "typing.TYPE_CHECKING",
        ):
            for inner in node.body:
                skipped.update(ast.walk(inner))
    return skipped


def import_graph(root: Path = DAEMON) -> dict[str, set[str]]:
    modules = _modules(root)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skipped = _type_checking_only(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom) or node in skipped:
                continue
            for target in _imported(node, package):
                # `from pkg import name`: the submodule when `name` is one, else the package.
                if target in modules and target != name:
                    graph[name].add(target)
                    if isinstance(node, ast.ImportFrom):
                        break
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The graph's strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_daemon_has_no_import_circle_outside_the_migrator():
    graph = import_graph()
    assert "daemon.api.routes" in graph and graph["daemon.api.mount"], "the graph was not read"
    outside = [c for c in cycles(graph) if not all(m.startswith("daemon.migrate.") for m in c)]
    assert outside == []


def test_the_migrator_has_no_import_circle():
    assert cycles(import_graph()) == []


def test_a_circle_is_found(tmp_path):
    """The check can fail: two modules importing each other (one inside a function)."""
    pkg = tmp_path / "daemon"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from daemon.b import thing\n")
    (pkg / "b.py").write_text("def thing():\n    from daemon import a\n")
    (pkg / "c.py").write_text(
        "TYPE_CHECKING = False\nif TYPE_CHECKING:\n    from daemon import a\n"
    )
    graph = import_graph(pkg)
    assert cycles(graph) == [["daemon.a", "daemon.b"]]
    assert graph["daemon.c"] == set()
