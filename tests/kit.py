"""The migration test kit, for whoever writes the next migration.

apply_range(db, upto=8)        # a database at schema v8, through the real migrator
seed(conn, 8)                  # (tests/seed.py) realistic rows in every table at v8
apply_range(db, upto=9)        # the migration under test
assert_db_clean(conn)          # integrity_check + foreign_key_check
dump(conn)                     # canonical schema + data, to prove "nothing changed"
rerun(db, 9)                   # run 9 again exactly as a self-heal would
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from daemon import __version__
from daemon.migrate import Outcome, run_migrations
from daemon.migrate.apply import CONNECTION_PRAGMAS
from daemon.migrate.ledger import OWN_TABLES
from daemon.migrate.source import load_source
from daemon.schema import IDEMPOTENT_MIGRATIONS

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def latest_version(migrations_dir: Path = MIGRATIONS) -> int:
    """The newest version in a migrations folder, found as the migrator finds files."""
    return max(m.version for m in load_source(migrations_dir))


def checksums(db_path: Path) -> dict[int, bytes]:
    """The ledger as sqlx reads it: version -> recorded checksum."""
    conn = sqlite3.connect(db_path)
    try:
        return {
            v: bytes(c) for v, c in conn.execute("SELECT version, checksum FROM _sqlx_migrations")
        }
    finally:
        conn.close()


def connect(db_path: Path) -> sqlite3.Connection:
    """A connection with the production settings, in autocommit mode."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    for pragma in CONNECTION_PRAGMAS:
        conn.execute(pragma)
    return conn


def apply_range(
    db_path: Path,
    migrations_dir: Path = MIGRATIONS,
    upto: int | None = None,
    idempotent: frozenset[int] = IDEMPOTENT_MIGRATIONS,
) -> Outcome:
    """Apply every version <= `upto` (all when None) with the real migrator."""
    return run_migrations(
        db_path, migrations_dir, idempotent=idempotent, daemon_version=__version__, target=upto
    )


def rerun(db_path: Path, version: int, migrations_dir: Path = MIGRATIONS) -> Outcome:
    """Run one applied migration again through the real self-heal path: its ledger checksum is
    made stale, then the migrator re-runs it as an allowlisted version (delete row + SQL + new
    row + heal-log row, one transaction, after a backup)."""
    conn = connect(db_path)
    try:
        changed = conn.execute(
            "UPDATE _sqlx_migrations SET checksum = ? WHERE version = ?", (b"\xef" * 48, version)
        ).rowcount
        (schema_version,) = conn.execute("SELECT max(version) FROM _sqlx_migrations").fetchone()
    finally:
        conn.close()
    assert changed == 1, f"migration {version} is not applied in {db_path}"
    outcome = apply_range(
        db_path, migrations_dir, upto=schema_version, idempotent=frozenset({version})
    )
    assert [h.action for h in outcome.heals] == ["rerun"], outcome.heals
    return outcome


def assert_db_clean(conn: sqlite3.Connection) -> None:
    integrity = [row[0] for row in conn.execute("PRAGMA integrity_check")]
    assert integrity == ["ok"], f"integrity_check: {integrity}"
    violations = conn.execute("PRAGMA foreign_key_check").fetchall()
    assert violations == [], f"foreign_key_check: {violations}"


def dump(conn: sqlite3.Connection, include_ledger: bool = False) -> str:
    """Schema and data in a canonical order (rows sorted, rootpages left out), so two databases
    with the same content dump identically however their pages are laid out."""
    skip = () if include_ledger else OWN_TABLES
    lines = []
    schema = conn.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
    ).fetchall()
    for kind, name, table, sql in schema:
        if table not in skip:
            lines.append(f"{kind} {name} on {table}: {sql}")
    for kind, name, _table, _sql in schema:
        if kind != "table" or name in skip:
            continue
        columns = [row[1] for row in conn.execute(f'PRAGMA table_info("{name}")')]
        order = ", ".join(str(i + 1) for i in range(len(columns)))
        lines.append(f"-- {name} ({', '.join(columns)})")
        lines.extend(repr(row) for row in conn.execute(f'SELECT * FROM "{name}" ORDER BY {order}'))
    return "\n".join(lines)


def file_bytes(db_path: Path) -> bytes:
    """The database's bytes after a checkpoint, for 'not one byte changed' assertions."""
    conn = sqlite3.connect(db_path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return db_path.read_bytes()


def schema_of(db: Path) -> int:
    """The highest migration recorded in the database file's ledger."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT max(version) FROM _sqlx_migrations").fetchone()[0]
    finally:
        conn.close()
