"""Down texts that travel with the data.

When a reversible migration is applied (or found applied with its file matching the ledger),
its down file's text, `-- discards:` header included, is kept in `_keysmith_down_texts` beside
the ledger. A release whose folder lacks that migration can then still revert it, whichever way
the platform orchestrates a downgrade.

A stored down text is trusted only when its origin is shown:
  - it undoes the text that is applied: its `up_checksum` equals the ledger row's checksum (a
    version re-applied by another tool from another text leaves it stale);
  - it was shipped by a release of this folder's lineage: its `lineage` equals ours. The lineage
    is the SHA-384 of the first text the lowest migration ever had, as the release-history lock
    lists it (without a lock, that migration's text today): every release of one project
    shares it, and a folder of another project does not;
  - it is not an acceptance's: an accepted version's text never ran, so no down undoes it.
Anything else is a refusal that changes nothing.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections import namedtuple

from daemon.migrate.history import load_history
from daemon.migrate.source import Migration

TYPE_CHECKING = False
if TYPE_CHECKING:
    from os import PathLike

# version, the up checksum it undoes, the lineage that shipped it, the down file's name, and
# the down as a Migration (path: where it came from, for messages).
Stored = namedtuple("Stored", "version up_checksum lineage file_name down")
STORED_MARK = "kept with the data"


def lineage(migrations_dir: str | PathLike[str], source: list[Migration]) -> bytes:
    """The folder's lineage: see the module's docstring."""
    if not source:
        return b""
    first = source[0]
    history = load_history(migrations_dir)
    texts = history.texts.get(first.version, []) if history else []
    return texts[0].sha384 if texts else first.checksum


def store(
    conn: sqlite3.Connection, applied: list[Migration], downs: dict[int, Migration], line: bytes
) -> None:
    """Keep the down text of each applied migration that has one; in the caller's transaction."""
    for migration in applied:
        down = downs.get(migration.version)
        if down is None:
            continue
        conn.execute(
            "INSERT OR REPLACE INTO _keysmith_down_texts "
            "(version, up_checksum, lineage, file_name, down_sql) VALUES (?, ?, ?, ?, ?)",
            (
                migration.version,
                migration.checksum,
                line,
                os.path.basename(down.path),
                down.sql_bytes,
            ),
        )


def read_stored(conn: sqlite3.Connection) -> dict[int, Stored]:
    """Every stored down text (empty when the table does not exist)."""
    try:
        rows = conn.execute(
            "SELECT version, up_checksum, lineage, file_name, down_sql FROM _keysmith_down_texts"
        ).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return {}
        raise
    found = {}
    for version, up, line, name, sql in rows:
        data = bytes(sql) if not isinstance(sql, str) else sql.encode("utf-8")
        down = Migration(
            version,
            name.split("_", 1)[-1].removesuffix(".down.sql").replace("_", " "),
            f"{name} ({STORED_MARK})",
            data,
            hashlib.sha384(data).digest(),
        )
        found[version] = Stored(version, bytes(up), bytes(line), name, down)
    return found


def forget(conn: sqlite3.Connection, version: int) -> None:
    conn.execute("DELETE FROM _keysmith_down_texts WHERE version = ?", (version,))
