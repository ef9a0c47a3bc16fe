"""What a Rust sqlx daemon (0.5 to 0.8.6) does to a SQLite database, written from the facts in
shared/docs/sqlx-ledger.md, so tests can start from a ledger sqlx wrote (no provenance rows of
ours, execution_time filled in after COMMIT) and check a database the way sqlx would."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from daemon.migrate.ledger import LEDGER_DDL
from daemon.migrate.source import load_source
from daemon.migrate.sqltext import statements


class SqlxError(Exception):
    pass


def sqlx_apply(
    db_path: Path,
    migrations_dir: Path,
    upto: int | None = None,
    hash_input: Callable[[bytes], bytes] = lambda raw: raw,
    leave_execution_time_unset: frozenset[int] = frozenset(),
) -> None:
    """`sqlx migrate run`: per migration BEGIN, the script, INSERT with execution_time -1,
    COMMIT, then UPDATE execution_time outside the transaction. `hash_input` models sqlx 0.9's
    `ignored-chars`; `leave_execution_time_unset` models a crash between COMMIT and UPDATE."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(LEDGER_DDL)
    applied = {v for (v,) in conn.execute("SELECT version FROM _sqlx_migrations")}
    for migration in load_source(migrations_dir):
        if migration.version in applied or (upto is not None and migration.version > upto):
            continue
        started = time.perf_counter_ns()
        conn.execute("BEGIN")
        for statement in statements(migration.text):
            conn.execute(statement)
        conn.execute(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, "
            "execution_time) VALUES (?, ?, TRUE, ?, -1)",
            (
                migration.version,
                migration.description,
                hashlib.sha384(hash_input(migration.sql_bytes)).digest(),
            ),
        )
        conn.execute("COMMIT")
        if migration.version not in leave_execution_time_unset:
            conn.execute(
                "UPDATE _sqlx_migrations SET execution_time = ? WHERE version = ?",
                (time.perf_counter_ns() - started, migration.version),
            )
    conn.close()


def sqlx_validate(db_path: Path, migrations_dir: Path) -> None:
    """sqlx's checks before it migrates, with its exact error texts."""
    conn = sqlite3.connect(db_path)
    rows = conn.execute(
        "SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version"
    ).fetchall()
    conn.close()
    source = {m.version: m for m in load_source(migrations_dir)}
    for version, _checksum, success in rows:
        if not success:
            raise SqlxError(
                f"migration {version} is partially applied; fix and remove row from "
                "`_sqlx_migrations` table"
            )
    for version, _checksum, _success in rows:
        if version not in source:
            raise SqlxError(
                f"migration {version} was previously applied but is missing in the resolved "
                "migrations"
            )
    for version, checksum, _success in rows:
        if bytes(checksum) != source[version].checksum:
            raise SqlxError(f"migration {version} was previously applied but has been modified")
