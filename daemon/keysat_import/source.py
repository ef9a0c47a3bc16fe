"""Reading a Keysat database: read-only, and only once its ledger and columns are known."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import quote

from daemon.keysat_import import columns, ledger
from daemon.keysat_import.errors import Refused
from daemon.keysat_import.values import Row

SQLITE_MAGIC = b"SQLite format 3\x00"


def read(path: Path) -> tuple[int, dict[str, list[Row]]]:
    """The Keysat schema version and every imported table's rows, or Refused."""
    name = str(path)
    _check_file(path)
    try:
        conn = sqlite3.connect(f"file:{quote(str(path.absolute()))}?mode=ro", uri=True)
    except sqlite3.Error as e:
        raise Refused(f"{name} could not be opened read-only: {e}") from None
    try:
        conn.row_factory = sqlite3.Row
        version = ledger.keysat_version(conn, name)
        tables = _tables(conn)
        columns.check_tables(tables, name)
        rows = {
            table: [dict(r) for r in conn.execute(f'SELECT * FROM "{table}" ORDER BY rowid')]
            for table in columns.IMPORTED
            if table in tables
        }
    except sqlite3.DatabaseError as e:
        raise Refused(f"{name} could not be read as a SQLite database: {e}") from None
    finally:
        conn.close()
    return version, rows


def _check_file(path: Path) -> None:
    try:
        with path.open("rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except IsADirectoryError:
        raise Refused(f"{path} is a folder; give the Keysat database file (keysat.db)") from None
    except OSError as e:
        raise Refused(f"{path} could not be read: {e.strerror}") from None
    if head != SQLITE_MAGIC:
        raise Refused(f"{path} is not a SQLite database (Keysat keeps its shop in keysat.db)")


def _tables(conn: sqlite3.Connection) -> dict[str, list[str]]:
    names = [n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {n: [c[1] for c in conn.execute(f'PRAGMA table_info("{n}")')] for n in names}
