"""Keysat's schema as facts (tests/data/keysat_schema.json), so the import tests run where
Keysat's repository is not (CI). Keysat's migration texts are under a source-available licence
and never enter this repository; what is committed is what SQLite and sqlx report about the
database the real sqlx-cli makes from them: the ledger rows, and per table its columns,
indexes and foreign keys as the PRAGMAs list them (plus the two facts no PRAGMA gives but the
shape depends on: AUTOINCREMENT, and a partial index's predicate). CHECK constraints are not
described: they govern what Keysat may write, never what the import reads.

Regenerate from the mirror (KEYSAT_REPO_GIT): `python -m tests.keysat_schema extract`.
tests/test_keysat_import.py checks the file against a fresh extraction wherever the mirror is.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
from contextlib import closing
from pathlib import Path
from typing import Any, Literal

DESCRIPTION = Path(__file__).parent / "data" / "keysat_schema.json"
SQLX = Path(sys.executable).parent / "sqlx"
KEYSAT_GIT = Path(os.environ.get("KEYSAT_REPO_GIT", "/work/.mirror/keysat-xyz+keysat/repo"))
KEYSAT_REF = "52ab993"  # release 0.2.0:63, the newest the import knows
RELEASE = "0.2.0:63"
MIGRATIONS = "licensing-service/migrations"
# The schemas the tests build: the oldest the import reads, and the newest it knows.
OLDEST, NEWEST = 3, 25
VERSIONS = (OLDEST, NEWEST)

Facts = dict[str, Any]
# Where a test's Keysat database comes from: Keysat's own migration files applied by the real
# sqlx-cli (needs the mirror), or the committed description (always there).
Source = Literal["sqlx", "described"]
SOURCES: tuple[Source, ...] = ("sqlx", "described")


def unavailable(source: Source) -> str | None:
    """Why databases from `source` cannot be made here, or None."""
    if source == "sqlx" and not (KEYSAT_GIT.exists() and SQLX.exists()):
        return f"needs Keysat's repository at {KEYSAT_GIT} (KEYSAT_REPO_GIT) and the sqlx-cli"
    return None


def make(db: Path, source: Source, version: int = NEWEST) -> None:
    """A Keysat database at migration `version` (one of VERSIONS), from `source`."""
    db.parent.mkdir(parents=True, exist_ok=True)
    if source == "sqlx":
        sqlx(db, keysat_migrations(db.parent / f"migrations-{version}", upto=version), "run")
    else:
        build(db, version)


def keysat_migrations(folder: Path, upto: int | None = None) -> Path:
    """Keysat's migration files (from release 0.2.0:63) in `folder`, the first `upto`."""
    git = ["git", f"--git-dir={KEYSAT_GIT}"]
    names = subprocess.run(
        [*git, "ls-tree", "--name-only", KEYSAT_REF, f"{MIGRATIONS}/"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    for name in sorted(names)[:upto]:
        text = subprocess.run(
            [*git, "show", f"{KEYSAT_REF}:{name}"], capture_output=True, check=True
        )
        (folder / Path(name).name).write_bytes(text.stdout)
    return folder


def sqlx(db: Path, folder: Path, *args: str) -> None:
    url = f"sqlite://{db}"
    for argv in (["database", "create"], ["migrate", *args, "--source", str(folder)]):
        done = subprocess.run(
            [str(SQLX), *argv, "--database-url", url],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr


def extract(db: Path) -> Facts:
    """The ledger and the schema of a Keysat database, as SQLite reports them."""
    with closing(sqlite3.connect(db)) as conn:
        others = conn.execute(
            "SELECT type, name FROM sqlite_master WHERE type NOT IN ('table', 'index')"
        ).fetchall()
        if others:  # a view or trigger: the description would silently lack it
            raise ValueError(f"{db} has schema objects this description cannot hold: {others}")
        names = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
        ).fetchall()
        ledger = conn.execute(
            "SELECT version, description, hex(checksum), success FROM _sqlx_migrations "
            "ORDER BY version"
        ).fetchall()
        return {
            "journal_mode": conn.execute("PRAGMA journal_mode").fetchone()[0],
            "ledger": [
                {"version": v, "description": d, "checksum": c.lower(), "success": bool(s)}
                for v, d, c, s in ledger
            ],
            "tables": {name: _table(conn, name, sql) for name, sql in names},
        }


def _table(conn: sqlite3.Connection, name: str, sql: str) -> Facts:
    def pragma(what: str, arg: str) -> list[tuple]:
        return conn.execute(f"SELECT * FROM pragma_{what}(?)", (arg,)).fetchall()

    columns = [
        {"name": n, "type": t, "notnull": bool(nn), "default": d, "pk": pk}
        for _, n, t, nn, d, pk in pragma("table_info", name)
    ]
    # index_list is newest first; the facts keep creation order, the order to rebuild in.
    indexes = [_index(conn, pragma, row) for row in reversed(pragma("index_list", name))]
    keys: dict[int, Facts] = {}
    for fk_id, _, parent, child, to, on_update, on_delete, match in pragma(
        "foreign_key_list", name
    ):
        key = keys.setdefault(
            fk_id,
            {"table": parent, "from": [], "to": [], "on_update": on_update,
             "on_delete": on_delete, "match": match},
        )  # fmt: skip
        key["from"].append(child)
        key["to"].append(to)
    return {
        "autoincrement": bool(re.search(r"\bAUTOINCREMENT\b", sql, re.IGNORECASE)),
        "columns": columns,
        "indexes": indexes,
        # foreign_key_list numbers the last declared 0: declaration order is the reverse.
        "foreign_keys": [keys[i] for i in sorted(keys, reverse=True)],
    }


def _index(conn: sqlite3.Connection, pragma: Any, row: tuple) -> Facts:
    _, name, unique, origin, partial = row
    parts = [r for r in pragma("index_xinfo", name) if r[5]]  # key columns only
    if any(cid < 0 for _, cid, *_ in parts):
        raise ValueError(f"index {name} is on an expression, which the description cannot hold")
    where = None
    if partial:
        (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (name,)).fetchone()
        where = " ".join(sql[re.search(r"\bWHERE\b", sql, re.IGNORECASE).end() :].split())
    return {
        "name": name,
        "unique": bool(unique),
        "origin": origin,
        "columns": [
            {"name": c, "desc": bool(d), "collation": coll} for _, _, c, d, coll, _ in parts
        ],
        "where": where,
    }


def describe() -> Facts:
    """The description, extracted from databases the real sqlx-cli made from Keysat's files."""
    commit = subprocess.run(
        ["git", f"--git-dir={KEYSAT_GIT}", "rev-parse", f"{KEYSAT_REF}^{{commit}}"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    facts: Facts = {
        "about": "Keysat's schema as SQLite reports it after the real sqlx-cli applied "
        "Keysat's migrations; regenerate with `python -m tests.keysat_schema extract`",
        "keysat": {"repository": "https://github.com/keysat-xyz/keysat", "commit": commit,
                   "release": RELEASE, "migrations": "licensing-service/migrations"},
        "schemas": {},
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for version in VERSIONS:
            db = Path(tmp) / str(version) / "keysat.db"
            make(db, "sqlx", version)
            facts["schemas"][str(version)] = extract(db)
    return facts


def load() -> Facts:
    return json.loads(DESCRIPTION.read_text())


def schema(version: int) -> Facts:
    """The committed facts of Keysat's schema after migration `version` (one of VERSIONS)."""
    return load()["schemas"][str(version)]


def build(db: Path, version: int) -> None:
    """A database with the described schema and ledger of Keysat migration `version`: the DDL
    is written here from the facts, the ledger rows carry sqlx's recorded checksums."""
    facts = schema(version)
    with closing(sqlite3.connect(db)) as conn:
        conn.execute(f"PRAGMA journal_mode = {facts['journal_mode']}")
        with conn:
            for name, table in facts["tables"].items():
                conn.execute(_create_table(name, table))
                for index in table["indexes"]:
                    if index["origin"] == "c":
                        conn.execute(_create_index(name, index))
            conn.executemany(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, "
                "execution_time) VALUES (?, ?, ?, ?, 0)",
                [
                    (e["version"], e["description"], e["success"], bytes.fromhex(e["checksum"]))
                    for e in facts["ledger"]
                ],
            )


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _names(names: list[str]) -> str:
    return ", ".join(map(_quote, names))


def _create_table(name: str, table: Facts) -> str:
    keys = [c["name"] for c in sorted(table["columns"], key=lambda c: c["pk"]) if c["pk"]]
    lines = []
    for column in table["columns"]:
        line = f"{_quote(column['name'])} {column['type']}".rstrip()
        if keys == [column["name"]]:  # inline, so INTEGER is the rowid and AUTOINCREMENT fits
            line += " PRIMARY KEY" + (" AUTOINCREMENT" if table["autoincrement"] else "")
        if column["notnull"]:
            line += " NOT NULL"
        if column["default"] is not None:
            line += f" DEFAULT {column['default']}"
        lines.append(line)
    if len(keys) > 1:
        lines.append(f"PRIMARY KEY ({_names(keys)})")
    # UNIQUE constraints in their autoindex order, so SQLite gives them the same names.
    for index in table["indexes"]:
        if index["origin"] == "u":
            lines.append(f"UNIQUE ({_names([c['name'] for c in index['columns']])})")
    for key in table["foreign_keys"]:
        to = "" if key["to"] == [None] else f" ({_names(key['to'])})"
        lines.append(
            f"FOREIGN KEY ({_names(key['from'])}) REFERENCES {_quote(key['table'])}{to} "
            f"ON UPDATE {key['on_update']} ON DELETE {key['on_delete']}"
        )
    return f"CREATE TABLE {_quote(name)} (\n  " + ",\n  ".join(lines) + "\n)"


def _create_index(table: str, index: Facts) -> str:
    parts = ", ".join(
        f"{_quote(c['name'])} COLLATE {c['collation']}" + (" DESC" if c["desc"] else "")
        for c in index["columns"]
    )
    unique = "UNIQUE " if index["unique"] else ""
    where = f" WHERE {index['where']}" if index["where"] else ""
    return f"CREATE {unique}INDEX {_quote(index['name'])} ON {_quote(table)} ({parts}){where}"


def render(facts: Facts) -> str:
    """JSON with one column, index or key a line: readable, and diffs say what changed."""
    return _render(facts, 0) + "\n"


def _render(value: Any, depth: int) -> str:
    flat = json.dumps(value)
    if isinstance(value, dict) and not any(isinstance(v, dict | list) for v in value.values()):
        return flat  # a ledger row, a column
    if not isinstance(value, dict | list) or depth >= 6 or len(flat) <= 100:
        return flat  # an index or foreign key, or anything short
    pad, inner = "  " * depth, "  " * (depth + 1)
    if isinstance(value, list):
        items = [inner + _render(v, depth + 1) for v in value]
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    items = [f"{inner}{json.dumps(k)}: {_render(v, depth + 1)}" for k, v in value.items()]
    return "{\n" + ",\n".join(items) + f"\n{pad}}}"


def main(argv: list[str]) -> int:
    if argv != ["extract"]:
        print("usage: python -m tests.keysat_schema extract", file=sys.stderr)
        return 2
    reason = unavailable("sqlx")
    if reason:
        print(f"{DESCRIPTION} was not changed: extracting {reason}", file=sys.stderr)
        return 1
    DESCRIPTION.parent.mkdir(exist_ok=True)
    DESCRIPTION.write_text(render(describe()))
    print(f"wrote {DESCRIPTION}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
