"""One migration run: plan without a lock, and if there is work, take the lock, plan again from a
fresh read of the ledger, back up if any SQL will run, then execute.

Refusals (a blocked plan, an unreadable database, a broken migrations folder) are raised before
anything is written, so "blocked" always means "nothing was changed".
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from daemon.migrate.errors import Blocked, DatabaseUnreadable
from daemon.migrate.ledger import EMPTY_LEDGER, Ledger, read_ledger
from daemon.migrate.plan import Plan, make_plan
from daemon.migrate.source import Migration, load_source

if TYPE_CHECKING:  # the executor's modules load only when a run has work to do
    from daemon.migrate.apply import HealEvent, Progress
    from daemon.migrate.backup import BackupInfo

log = logging.getLogger("keysmith.migrate")
T = TypeVar("T")


@dataclass
class Outcome:
    plan: Plan
    schema_version: int | None
    applied: list[int] = field(default_factory=list)
    heals: list[HealEvent] = field(default_factory=list)
    backup: BackupInfo | None = None
    seconds: float = 0.0
    pending: int = 0


def inspect(
    db_path: Path,
    migrations_dir: Path,
    idempotent: frozenset[int],
    target: int | None = None,
) -> Plan:
    """The plan a run would carry out. Reads only; never creates the database file."""
    return make_plan(load_source(migrations_dir), _read_only_ledger(db_path), idempotent, target)


def run_migrations(
    db_path: Path,
    migrations_dir: Path,
    *,
    idempotent: frozenset[int],
    daemon_version: str,
    target: int | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    lock_timeout: float = 30.0,
) -> Outcome:
    started = time.perf_counter()
    source = load_source(migrations_dir)
    plan = make_plan(source, _read_only_ledger(db_path), idempotent, target)
    _refuse_if_blocked(plan)
    if not plan.changes_anything:
        return Outcome(plan, plan.schema_version, seconds=time.perf_counter() - started)
    outcome = _migrate_locked(
        db_path, source, idempotent, daemon_version, target, on_progress, lock_timeout
    )
    outcome.seconds = time.perf_counter() - started
    return outcome


def _migrate_locked(
    db_path: Path,
    source: list[Migration],
    idempotent: frozenset[int],
    daemon_version: str,
    target: int | None,
    on_progress: Callable[[Progress], None] | None,
    lock_timeout: float,
) -> Outcome:
    # Imported here so a no-op run never pays for the executor's imports.
    from daemon.migrate.apply import Executor, Progress, open_for_migration
    from daemon.migrate.backup import take_backup
    from daemon.migrate.lock import migration_lock

    db_path.parent.mkdir(parents=True, exist_ok=True)
    with migration_lock(db_path, lock_timeout):
        conn = _guarded(db_path, open_for_migration, db_path)
        try:
            current = _guarded(db_path, read_ledger, conn)
            plan = make_plan(source, current, idempotent, target)  # re-read under the lock
            _refuse_if_blocked(plan)
            backup = None
            if plan.runs_sql and (current.rows or current.has_user_tables):
                if on_progress:
                    on_progress(Progress(None, "backup", 0, len(plan.steps), "backup"))
                backup = take_backup(conn, db_path, plan.schema_version)
                log.info("backed up the database to %s before migrating", backup.path)
            executor = Executor(conn, db_path, daemon_version, backup, on_progress)
            applied, heals = executor.execute(plan)
            after = read_ledger(conn)
        finally:
            conn.close()
    pending = sum(1 for f in make_plan(source, after, idempotent).findings if f.action == "apply")
    return Outcome(plan, after.schema_version, applied, heals, backup, pending=pending)


def _refuse_if_blocked(plan: Plan) -> None:
    if plan.blockers:
        error = Blocked([f.as_blocker() for f in plan.blockers])
        log.error("%s", error, extra={"context": {"blocked": [f.version for f in plan.blockers]}})
        raise error


def _read_only_ledger(db_path: Path) -> Ledger:
    if not db_path.exists():
        return EMPTY_LEDGER
    conn = _guarded(db_path, sqlite3.connect, db_path, timeout=30.0)
    try:
        return _guarded(db_path, read_ledger, conn)
    finally:
        conn.close()


def _guarded(db_path: Path, action: Callable[..., T], *args: object, **kwargs: object) -> T:
    """Run a database call, turning SQLite's 'not a database' family into an operator error."""
    try:
        return action(*args, **kwargs)
    except sqlite3.DatabaseError as exc:
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            raise
        raise DatabaseUnreadable(str(db_path), str(exc)) from None
