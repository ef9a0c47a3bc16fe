"""The migrator is generic: it works on any sqlx folder and any SQLite file, so its own words
never name the application that ships it (the hosts, daemon/boot.py and the CLI, do)."""

from __future__ import annotations

import ast
from pathlib import Path

from daemon.migrate.errors import Remedy

PACKAGE = Path(__file__).resolve().parent.parent / "daemon" / "migrate"
PRODUCT = "keysmith"
# Names that are data formats, not words: renaming them would break existing databases and
# log pipelines (the side tables beside sqlx's ledger, and the logger's name).
FORMAT_NAMES = ("_keysmith_", "keysmith.migrate")


def _literals(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)]
    return [v for v in found if isinstance(v, str)]


def test_no_message_or_docstring_of_the_migrator_names_the_product():
    offenders = []
    for path in sorted(PACKAGE.glob("*.py")):
        for text in _literals(path):
            stripped = text
            for name in FORMAT_NAMES:
                stripped = stripped.replace(name, "")
            if PRODUCT in stripped.lower():
                offenders.append(f"{path.name}: {text[:80]!r}")
    assert not offenders, offenders


def test_every_remedy_code_is_worded_by_both_hosts(tmp_path):
    from daemon.cli_migrate import ShellWords
    from daemon.remedies import startos_words

    shell = ShellWords(str(tmp_path / "app.db"))
    for remedy in Remedy:
        assert startos_words((remedy,)), remedy
        assert shell((remedy,)), remedy
