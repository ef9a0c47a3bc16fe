"""Keysat's API as its Rust source declares it: the router's (method, path, handler) list, the
field names its structs (de)serialize with serde's attributes applied, and the keys each
handler writes in a `json!` literal. The contract test (`test_keysat_router`) drives Keysmith
from this.

Keysat's source is not committed here (its source-available license, and the project's rule),
so what the parser reads from it is kept as facts in `tests/keysat/api.json`, with the
commit it came from: the test reads that file, and where the stored Keysat mirror is on the
machine it parses the source again at that commit and checks the file agrees. To follow a newer
Keysat: `python -m tests.keysat_source [COMMIT]` rewrites the file from the mirror.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

MIRROR = Path(os.environ.get("KEYSAT_MIRROR", "/work/.mirror/keysat-xyz+keysat/repo"))
SNAPSHOT = Path(__file__).parent / "keysat" / "api.json"
SOURCE_DIR = "licensing-service/src"
ROUTER = f"{SOURCE_DIR}/api/mod.rs"
METHODS = ("get", "post", "put", "patch", "delete")


def _balanced(text: str, start: int, open_: str = "(", close: str = ")") -> str:
    """The text from `start` (just after an opening bracket) to its matching close, skipping
    string literals so a bracket inside one does not count."""
    depth, i, in_string = 1, start, False
    while i < len(text):
        ch = text[i]
        if in_string:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch == open_:
            depth += 1
        elif ch == close:
            depth -= 1
            if depth == 0:
                return text[start:i]
        i += 1
    raise ValueError(f"unbalanced {open_!r} from offset {start}")


# A raw string (`r#"..."#`, emptied: its quotes would confuse the bracket count), a char
# literal (`'"'`, made harmless), a string literal (kept: `json!` keys are strings), a comment.
_LEXEMES = re.compile(r'r(#*)".*?"\1|\'(?:\\.|[^\'\\])\'|"(?:\\.|[^"\\])*"|//[^\n]*', re.DOTALL)


def _without_comments(text: str) -> str:
    """The source without comments, raw strings and char literals; a `//` inside a string
    literal (a URL) stays."""

    def keep(match: re.Match) -> str:
        lexeme = match.group(0)
        if lexeme.startswith("r"):
            return '""'
        if lexeme.startswith("'"):
            return "'_'"
        return lexeme if lexeme.startswith('"') else ""

    return _LEXEMES.sub(keep, text)


def routes(router_source: str) -> list[dict]:
    """Every `.route("path", get(h).post(h2)...)` of `router()`, one row per method, paths in
    Keysmith's spelling (`:id` as `{id}`, axum's `*rest` as `{rest*}`)."""
    body = _without_comments(router_source[router_source.index("pub fn router(") :])
    found = []
    for match in re.finditer(r"\.route\(", body):
        args = _balanced(body, match.end())
        path = re.match(r'\s*"([^"]*)"', args).group(1)
        path = re.sub(r":(\w+)", r"{\1}", path)
        path = re.sub(r"\*(\w+)", r"{\1*}", path)
        for method, handler in re.findall(rf"\b({'|'.join(METHODS)})\(\s*([\w:]+)\s*\)", args):
            handler = handler if "::" in handler else f"mod::{handler}"  # defined in mod.rs
            found.append({"method": method.upper(), "path": path, "handler": handler})
    return found


def _serde_names(attrs: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)\s*=\s*"([^"]*)"', attrs)) | {
        flag: "" for flag in re.findall(r"\b(skip|skip_serializing)\b(?!_)", attrs)
    }


def structs(source: str) -> dict[str, list[str]]:
    """Each serde struct's fields as they appear on the wire: `rename` and the struct's
    `rename_all` (snake_case, lowercase) applied, `skip`/`skip_serializing` fields left out,
    `skip_serializing_if` ones marked `name?` (absent when empty). (Keysat's API structs use no
    `flatten`, so it is not read.)"""
    text = _without_comments(source)
    found: dict[str, list[str]] = {}
    pattern = r"((?:#\[[^\]]*\]\s*)*)pub struct (\w+)(?:<[^>]*>)?\s*\{"
    for match in re.finditer(pattern, text):
        attributes, name = match.group(1), match.group(2)
        if "Serialize" not in attributes and "Deserialize" not in attributes:
            continue
        rename_all = _serde_names(" ".join(re.findall(r"#\[serde\(([^\]]*)\)\]", attributes)))
        found[name] = _fields(_balanced(text, match.end(), "{", "}"), rename_all.get("rename_all"))
    return found


def _fields(body: str, rename_all: str | None) -> list[str]:
    fields = []
    for attrs, field in re.findall(r"((?:#\[[^\]]*\]\s*)*)pub (\w+)\s*:", body):
        serde = _serde_names(" ".join(re.findall(r"#\[serde\(([^\]]*)\)\]", attrs)))
        if "skip" in serde or "skip_serializing" in serde:
            continue
        if rename_all not in (None, "lowercase", "snake_case"):
            raise ValueError(f"rename_all = {rename_all!r} is not read here; teach _fields it")
        wire = serde.get("rename") or (field.lower() if rename_all == "lowercase" else field)
        # `name?`: left out when empty (skip_serializing_if).
        fields.append(wire + ("?" if "skip_serializing_if" in serde else ""))
    return fields


def handlers(source: str) -> dict[str, dict]:
    """For each `async fn`: the keys written inside its `json!({...})` literals, and the
    structs its `Query<...>` and `Json<...>` extractors read (by bare name)."""
    text = _without_comments(source)
    found: dict[str, dict] = {}
    for match in re.finditer(r"async fn (\w+)\s*\(", text):
        params = _balanced(text, match.end())
        body_start = text.index("{", match.end() + len(params))
        body = _balanced(text, body_start + 1, "{", "}")
        keys: set[str] = set()
        for literal in re.finditer(r"json!\s*\(\s*\{", body):
            keys |= set(re.findall(r'"(\w+)"\s*:', _balanced(body, literal.end(), "{", "}")))
        reads = {
            kind.lower(): name
            for kind, name in re.findall(r"\b(Query|Json)<(?:[\w:]*::)?(\w+)>", params)
        }
        found[match.group(1)] = {"json_keys": sorted(keys), **reads}
    return found


def _show(commit: str, path: str) -> str:
    return subprocess.run(
        ["git", f"--git-dir={MIRROR}", "show", f"{commit}:{path}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def parse_mirror(commit: str) -> dict:
    """The whole snapshot, parsed from the mirror at `commit`."""
    listed = subprocess.run(
        ["git", f"--git-dir={MIRROR}", "ls-tree", "--name-only", f"{commit}:{SOURCE_DIR}/api"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    api_files = [f"{SOURCE_DIR}/api/{name}" for name in listed if name.endswith(".rs")]
    all_structs: dict[str, list[str]] = {}
    all_handlers: dict[str, dict] = {}
    for path in [f"{SOURCE_DIR}/models.rs", *api_files]:
        source = _show(commit, path)
        module = Path(path).stem
        # Module-qualified: two handler files may each have a `SetActiveReq` or `ListQuery`.
        all_structs |= {f"{module}::{name}": fields for name, fields in structs(source).items()}
        for fn, found in handlers(source).items():
            for kind in ("query", "json"):
                if kind in found:
                    found[kind] = _qualified(found[kind], module, all_structs)
            all_handlers[f"{module}::{fn}"] = found
    return {
        "origin": {"repo": "keysat-xyz/keysat", "commit": commit, "router": ROUTER},
        "routes": routes(_show(commit, ROUTER)),
        "structs": dict(sorted(all_structs.items())),
        "handlers": dict(sorted(all_handlers.items())),
    }


def _qualified(name: str, module: str, known: dict) -> str:
    """A struct named bare in a handler's signature: its own module's, else the one module
    that declares it (`Value` and other non-struct types stay bare)."""
    if f"{module}::{name}" in known:
        return f"{module}::{name}"
    elsewhere = [key for key in known if key.endswith(f"::{name}")]
    return elsewhere[0] if len(elsewhere) == 1 else name


def mirror_commit(ref: str = "HEAD") -> str | None:
    if not MIRROR.is_dir():
        return None
    done = subprocess.run(
        ["git", f"--git-dir={MIRROR}", "rev-parse", ref], capture_output=True, text=True
    )
    return done.stdout.strip() if done.returncode == 0 else None


def load_snapshot() -> dict:
    return json.loads(SNAPSHOT.read_text())


if __name__ == "__main__":
    commit = mirror_commit(sys.argv[1] if len(sys.argv) > 1 else "HEAD")
    if commit is None:
        sys.exit(f"no Keysat mirror at {MIRROR} (set KEYSAT_MIRROR); nothing was written")
    SNAPSHOT.parent.mkdir(exist_ok=True)
    SNAPSHOT.write_text(json.dumps(parse_mirror(commit), indent=1, sort_keys=True) + "\n")
    print(f"wrote {SNAPSHOT} from Keysat {commit}")
