"""The `_sqlx_migrations` ledger, byte-compatible with sqlx, and our side tables beside it.

sqlx reads only `version, checksum` (ordered by version) and ignores tables it does not know, so a
database we migrate can be handed back to a sqlx daemon and vice versa.

Side tables (ours):
- `_keysmith_provenance`: per version, the exact bytes whose SHA-384 is in the ledger, and the
  hash of their comment/whitespace-free token stream: what makes comment-only edits provable.
- `_keysmith_heal_log`: one row per heal, revert or operator's acceptance, append-only
  (triggers refuse UPDATE and DELETE).
"""

from __future__ import annotations

import sqlite3
from collections import namedtuple

LEDGER_TABLE = "_sqlx_migrations"
PROVENANCE_TABLE = "_keysmith_provenance"
HEAL_LOG_TABLE = "_keysmith_heal_log"
OWN_TABLES = (LEDGER_TABLE, PROVENANCE_TABLE, HEAL_LOG_TABLE)
# Exactly sqlx-sqlite's `ensure_migrations_table` text, so sqlite_master holds the same schema.
LEDGER_DDL = """CREATE TABLE IF NOT EXISTS _sqlx_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    success BOOLEAN NOT NULL,
    checksum BLOB NOT NULL,
    execution_time BIGINT NOT NULL
);"""

SIDE_TABLES_DDL = (
    # applied_sql last: reading the other columns then never walks a large text's overflow pages.
    """CREATE TABLE IF NOT EXISTS _keysmith_provenance (
    version BIGINT PRIMARY KEY,
    checksum BLOB NOT NULL,
    normalized_sha384 BLOB NOT NULL,
    recorded_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    applied_sql BLOB NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS _keysmith_heal_log (
    id INTEGER PRIMARY KEY,  -- no AUTOINCREMENT: rows are never deleted, ids only grow
    healed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    version BIGINT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('restamp', 'rerun', 'revert', 'accept')),
    evidence TEXT NOT NULL,
    old_checksum BLOB,
    new_checksum BLOB NOT NULL,
    backup_file TEXT,
    daemon_version TEXT NOT NULL
)""",
    """CREATE TRIGGER IF NOT EXISTS _keysmith_heal_log_no_update
BEFORE UPDATE ON _keysmith_heal_log
BEGIN SELECT RAISE(ABORT, 'the heal log is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS _keysmith_heal_log_no_delete
BEFORE DELETE ON _keysmith_heal_log
BEGIN SELECT RAISE(ABORT, 'the heal log is append-only'); END""",
)


AppliedRow = namedtuple(
    "AppliedRow", "version description installed_on success checksum execution_time"
)
Provenance = namedtuple("Provenance", "applied_sql checksum normalized_sha384")
# Stands for "text kept" for versions that match their file: their text is never needed, so it
# is not read (see read_ledger).
RECORDED = Provenance(None, None, None)


class Ledger(namedtuple("Ledger", "rows provenance")):
    """rows: {version: AppliedRow}; provenance: {version: Provenance}."""

    __slots__ = ()

    @property
    def schema_version(self) -> int | None:
        done = [v for v, row in self.rows.items() if row.success]
        return max(done) if done else None


EMPTY_LEDGER = Ledger({}, {})


def read_ledger(
    conn: sqlite3.Connection, source_checksums: dict[int, bytes] | None = None
) -> Ledger:
    """The ledger rows and which versions have provenance. Provenance details, and the applied
    text (possibly large), are read only for versions whose checksum differs from
    `source_checksums`: only those can need a proof."""
    rows: dict[int, AppliedRow] = {}
    for version, desc, installed, success, checksum, elapsed in _select_if_exists(
        conn,
        "SELECT version, description, installed_on, success, checksum, execution_time "
        "FROM _sqlx_migrations ORDER BY version",
    ):
        if type(checksum) is not bytes:
            checksum = _as_bytes(checksum)
        rows[version] = AppliedRow(version, desc, str(installed), bool(success), checksum, elapsed)
    recorded = _select_if_exists(conn, "SELECT version FROM _keysmith_provenance")
    provenance: dict[int, Provenance] = dict.fromkeys((v for (v,) in recorded), RECORDED)
    known = source_checksums or {}
    for version, row in rows.items():
        if version in provenance and known.get(version, row.checksum) != row.checksum:
            provenance[version] = _provenance_of(conn, version)
    return Ledger(rows, provenance)


def count_heals(conn: sqlite3.Connection) -> int:
    """Heals recorded in this database's heal log, ever."""
    return len(_select_if_exists(conn, "SELECT id FROM _keysmith_heal_log"))


HealEntry = namedtuple("HealEntry", "healed_at version action evidence backup_file daemon_version")
# What each heal-log action did, in words every front end shows (actions, console).
HEAL_ACTION_WORDS = {
    "restamp": "re-stamped the checksum; no SQL ran",
    "rerun": "re-ran the migration in one transaction, after a backup",
    "revert": "reverted it with its down file (a downgrade)",
    "accept": "accepted its changed text by the operator; no SQL ran",
}
# What the entries of the heal log rest on, for a reader of the whole list.
HEAL_LOG_BASIS = (
    "Re-stamps and re-runs were proven safe before they were applied; a revert is a downgrade "
    "with the migration's own down file, and an acceptance is the operator's decision (its "
    "evidence says who and when)."
)


def read_heal_log(conn: sqlite3.Connection) -> list[HealEntry]:
    """Every heal recorded in this database, newest first."""
    return [
        HealEntry(*row)
        for row in _select_if_exists(
            conn,
            "SELECT healed_at, version, action, evidence, backup_file, daemon_version "
            "FROM _keysmith_heal_log ORDER BY id DESC",
        )
    ]


def has_user_tables(conn: sqlite3.Connection) -> bool:
    """Whether the database holds anything besides the migrator's own tables."""
    names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    return bool(names - set(OWN_TABLES) - {"sqlite_sequence"})


def _select_if_exists(conn: sqlite3.Connection, query: str) -> list[tuple]:
    try:
        return conn.execute(query).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise


def _provenance_of(conn: sqlite3.Connection, version: int) -> Provenance:
    sql, checksum, normalized = conn.execute(
        "SELECT applied_sql, checksum, normalized_sha384 FROM _keysmith_provenance "
        "WHERE version = ?",
        (version,),
    ).fetchone()
    return Provenance(_as_bytes(sql), checksum, normalized)


def _as_bytes(value: bytes | str | None) -> bytes:
    """Hand-edited ledgers sometimes hold TEXT where sqlx writes BLOB; compare bytes regardless."""
    if value is None:
        return b""
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def ensure_tables(conn: sqlite3.Connection) -> None:
    conn.execute(LEDGER_DDL)
    _widen_heal_log(conn)
    for ddl in SIDE_TABLES_DDL:
        conn.execute(ddl)


def _widen_heal_log(conn: sqlite3.Connection) -> None:
    """A heal log created before reverts and acceptances existed allows only 'restamp' and
    'rerun': rebuild it with every row kept, in the caller's transaction. Its triggers go
    first: the new table's triggers reuse their names."""
    found = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (HEAL_LOG_TABLE,)
    ).fetchone()
    if found is None or "'accept'" in found[0]:
        return
    conn.execute("DROP TRIGGER IF EXISTS _keysmith_heal_log_no_update")
    conn.execute("DROP TRIGGER IF EXISTS _keysmith_heal_log_no_delete")
    conn.execute("ALTER TABLE _keysmith_heal_log RENAME TO _keysmith_heal_log_narrow")
    for ddl in SIDE_TABLES_DDL:
        conn.execute(ddl)
    conn.execute("INSERT INTO _keysmith_heal_log SELECT * FROM _keysmith_heal_log_narrow")
    conn.execute("DROP TABLE _keysmith_heal_log_narrow")


def insert_applied(
    conn: sqlite3.Connection, version: int, description: str, checksum: bytes, elapsed_ns: int
) -> None:
    # sqlx inserts execution_time = -1 and updates it after COMMIT; we know it before COMMIT,
    # so the row is final in the same transaction and never left at -1 by a crash.
    conn.execute(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) "
        "VALUES (?, ?, TRUE, ?, ?)",
        (version, description, checksum, elapsed_ns),
    )


def record_provenance(
    conn: sqlite3.Connection, version: int, sql: bytes, checksum: bytes, normalized: bytes
) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO _keysmith_provenance "
        "(version, applied_sql, checksum, normalized_sha384) VALUES (?, ?, ?, ?)",
        (version, sql, checksum, normalized),
    )


HealRecord = namedtuple(
    "HealRecord",
    "version action evidence old_checksum new_checksum backup_file daemon_version",
)


def append_heal(conn: sqlite3.Connection, heal: HealRecord) -> None:
    conn.execute(
        "INSERT INTO _keysmith_heal_log (version, action, evidence, old_checksum, new_checksum, "
        "backup_file, daemon_version) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            heal.version,
            heal.action,
            heal.evidence,
            heal.old_checksum,
            heal.new_checksum,
            heal.backup_file,
            heal.daemon_version,
        ),
    )


def restamp(conn: sqlite3.Connection, version: int, old: bytes, new: bytes) -> None:
    updated = conn.execute(
        "UPDATE _sqlx_migrations SET checksum = ? WHERE version = ? AND checksum = ?",
        (new, version, old),
    ).rowcount
    if updated != 1:
        raise sqlite3.OperationalError(f"ledger row {version} changed under the migration lock")


def delete_row(conn: sqlite3.Connection, version: int) -> None:
    conn.execute("DELETE FROM _sqlx_migrations WHERE version = ?", (version,))


def forget(conn: sqlite3.Connection, version: int, checksum: bytes) -> None:
    """A reverted version leaves the ledger and provenance, as if never applied (sqlx's
    `migrate revert` deletes its row too). Called after ensure_tables."""
    deleted = conn.execute(
        "DELETE FROM _sqlx_migrations WHERE version = ? AND checksum = ?", (version, checksum)
    ).rowcount
    if deleted != 1:
        raise sqlite3.OperationalError(f"ledger row {version} changed under the migration lock")
    conn.execute("DELETE FROM _keysmith_provenance WHERE version = ?", (version,))
