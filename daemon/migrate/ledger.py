"""The `_sqlx_migrations` ledger, byte-compatible with sqlx, and our side tables beside it.

sqlx reads only `version, checksum` (ordered by version) and ignores tables it does not know, so a
database we migrate can be handed back to a sqlx daemon and vice versa.

Side tables (ours):
- `_keysmith_provenance`: per version, the exact bytes whose SHA-384 is in the ledger: what makes
  comment-only edits provable. Its `normalized_sha384` column (the hash of those bytes'
  comment/whitespace-free token stream) is written empty since the token hash is derived from
  `applied_sql` only when a checksum differs (NOT_STORED): hashing every applied text's tokens cost
  a run of many migrations a tenth of its time. Rows an earlier release wrote keep their stored
  value, and are read the same way: from `applied_sql`, which their checksum authenticates.
- `_keysmith_heal_log`: one row per heal, revert or operator's acceptance (or its undo),
  append-only (triggers refuse UPDATE and DELETE).
- `_keysmith_down_texts`: per applied reversible version, its down file's text (with its
  `-- discards:` header), the SHA-384 of the up text it undoes and the lineage of the folder that
  shipped it (carried.py): the down travels with the data, so a release that lacks a newer
  migration can still revert it.
- `_keysmith_accept_undo`: per acceptance, the checksum and provenance it replaced, so
  `accept --undo` can put them back.
"""

from __future__ import annotations

import sqlite3
from collections import namedtuple

LEDGER_TABLE = "_sqlx_migrations"
PROVENANCE_TABLE = "_keysmith_provenance"
HEAL_LOG_TABLE = "_keysmith_heal_log"
DOWN_TEXTS_TABLE = "_keysmith_down_texts"
ACCEPT_UNDO_TABLE = "_keysmith_accept_undo"
OWN_TABLES = (LEDGER_TABLE, PROVENANCE_TABLE, HEAL_LOG_TABLE, DOWN_TEXTS_TABLE, ACCEPT_UNDO_TABLE)
HEAL_ACTIONS = ("restamp", "rerun", "revert", "accept", "unaccept")
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
    action TEXT NOT NULL CHECK (action IN ('restamp', 'rerun', 'revert', 'accept', 'unaccept')),
    evidence TEXT NOT NULL,
    old_checksum BLOB,
    new_checksum BLOB NOT NULL,
    backup_file TEXT,
    daemon_version TEXT NOT NULL
)""",
    # down_sql last, like applied_sql above.
    """CREATE TABLE IF NOT EXISTS _keysmith_down_texts (
    version BIGINT PRIMARY KEY,
    up_checksum BLOB NOT NULL,
    lineage BLOB NOT NULL,
    file_name TEXT NOT NULL,
    recorded_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    down_sql BLOB NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS _keysmith_accept_undo (
    heal_id INTEGER PRIMARY KEY,
    version BIGINT NOT NULL,
    old_checksum BLOB NOT NULL,
    old_normalized_sha384 BLOB,
    old_applied_sql BLOB
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
Provenance = namedtuple("Provenance", "applied_sql checksum")
# Stands for "text kept" for versions that match their file: their text is never needed, so it
# is not read (see read_ledger).
RECORDED = Provenance(None, None)
# What new provenance rows hold in `normalized_sha384` (NOT NULL in every release's table): the
# token hash is computed from `applied_sql` when a proof needs it, never stored.
NOT_STORED = b""


class Ledger(namedtuple("Ledger", "rows provenance carried accepted")):
    """rows: {version: AppliedRow}; provenance: {version: Provenance}, only where it was kept
    for the checksum the ledger holds; carried: {version: the up checksum its stored down text
    undoes}; accepted: the versions whose ledger checksum is an operator's acceptance (its
    text never ran)."""

    __slots__ = ()

    @property
    def schema_version(self) -> int | None:
        done = [v for v, row in self.rows.items() if row.success]
        return max(done) if done else None


EMPTY_LEDGER = Ledger({}, {}, {}, frozenset())


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
    # Provenance vouches for a version only while it was kept for the checksum the ledger holds
    # now: a row another tool reverted and re-applied from a changed file leaves a stale one.
    # Compared in SQL: a no-op run never pulls a thousand checksums into Python.
    recorded = _select_if_exists(
        conn,
        "SELECT p.version FROM _keysmith_provenance AS p JOIN _sqlx_migrations AS m "
        "ON m.version = p.version WHERE CAST(p.checksum AS BLOB) = CAST(m.checksum AS BLOB)",
    )
    provenance: dict[int, Provenance] = dict.fromkeys((v for (v,) in recorded), RECORDED)
    known = source_checksums or {}
    for version, row in rows.items():
        if version in provenance and known.get(version, row.checksum) != row.checksum:
            provenance[version] = _provenance_of(conn, version)
    carried = {
        v: _as_bytes(up)
        for v, up in _select_if_exists(
            conn, "SELECT version, up_checksum FROM _keysmith_down_texts"
        )
    }
    return Ledger(rows, provenance, carried, _accepted(conn, rows))


def _accepted(conn: sqlite3.Connection, rows: dict[int, AppliedRow]) -> frozenset[int]:
    """Versions whose newest acceptance is not undone and still holds the ledger's checksum."""
    latest: dict[int, tuple[str, bytes]] = {}
    for version, action, new in _select_if_exists(
        conn,
        "SELECT version, action, new_checksum FROM _keysmith_heal_log "
        "WHERE action IN ('accept', 'unaccept') ORDER BY id",
    ):
        latest[version] = (action, _as_bytes(new))
    return frozenset(
        v
        for v, (action, new) in latest.items()
        if action == "accept" and v in rows and rows[v].checksum == new
    )


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
    "unaccept": "undid an operator's acceptance: the checksum and text it replaced are back",
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
    sql, checksum = conn.execute(
        "SELECT applied_sql, checksum FROM _keysmith_provenance WHERE version = ?", (version,)
    ).fetchone()
    return Provenance(_as_bytes(sql), checksum)


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
    """A heal log created before reverts, acceptances or their undo existed allows fewer
    actions: rebuild it with every row kept, in the caller's transaction. Its triggers go
    first: the new table's triggers reuse their names."""
    found = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (HEAL_LOG_TABLE,)
    ).fetchone()
    if found is None or "'unaccept'" in found[0]:
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


def record_provenance(conn: sqlite3.Connection, version: int, sql: bytes, checksum: bytes) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO _keysmith_provenance "
        "(version, applied_sql, checksum, normalized_sha384) VALUES (?, ?, ?, ?)",
        (version, sql, checksum, NOT_STORED),
    )


HealRecord = namedtuple(
    "HealRecord",
    "version action evidence old_checksum new_checksum backup_file daemon_version",
)


def append_heal(conn: sqlite3.Connection, heal: HealRecord) -> int:
    """Append one entry; returns its id."""
    return conn.execute(
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
    ).lastrowid


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
    """A reverted version leaves the ledger, provenance and kept down text, as if never
    applied (sqlx's `migrate revert` deletes its row too). Called after ensure_tables."""
    deleted = conn.execute(
        "DELETE FROM _sqlx_migrations WHERE version = ? AND checksum = ?", (version, checksum)
    ).rowcount
    if deleted != 1:
        raise sqlite3.OperationalError(f"ledger row {version} changed under the migration lock")
    conn.execute("DELETE FROM _keysmith_provenance WHERE version = ?", (version,))
    conn.execute("DELETE FROM _keysmith_down_texts WHERE version = ?", (version,))
