"""One revert, read top to bottom in `revert_migrations`, with a run's discipline: plan without a
lock and refuse there; take the migration lock, re-read the ledger and plan again; hold the
users lock exclusively (a reverted schema under a process that has the database open would
break it, and a failed step has the backup restored); back up; run each down step in one
transaction with the removal of its ledger and provenance rows and its heal-log entry.

Refusals are raised before anything is written, so they always mean "nothing was changed". A
revert is all or nothing: when any down step fails, the backup taken before the first one is
put back, so the database is never left between two versions (a platform's downgrade that
stops there would leave a schema neither version knows).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections import namedtuple
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import NoReturn

from daemon.migrate import ledger
from daemon.migrate.apply import Progress, open_for_migration, transaction
from daemon.migrate.backup import (
    BackupInfo,
    BackupKind,
    open_database_file,
    restore_backup,
    take_backup,
)
from daemon.migrate.errors import Blocked, MigrateError, RevertFailed
from daemon.migrate.lock import UsersLock, migration_lock
from daemon.migrate.plan import BACKUP, Action, Finding
from daemon.migrate.revert_plan import RevertPlan, plan_revert
from daemon.migrate.runner import checksums, read_only_ledger, sqlite_errors, storage_errors
from daemon.migrate.source import Migration, load_downs, load_source
from daemon.migrate.sqltext import statements

log = logging.getLogger("keysmith.migrate")

# plan: the RevertPlan followed; schema_version: after it; reverted: versions undone, newest
# first; backup: the BackupInfo taken first (None when nothing was to be done).
RevertOutcome = namedtuple("RevertOutcome", "plan schema_version reverted backup seconds")


def revert_migrations(
    db_path: str | os.PathLike[str],
    migrations_dir: str | os.PathLike[str],
    *,
    daemon_version: str,
    target: int | None = None,
    on_plan: Callable[[RevertPlan], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    lock_timeout: float = 30.0,
) -> RevertOutcome:
    """Revert the applied versions above `target` (only the newest one when None), newest
    first. Raises Blocked before anything changes when any of them cannot be reverted.
    `on_plan` is shown the plan it will carry out (each step's evidence names what its down
    file discards) once it holds the lock, before anything is written."""
    started = time.perf_counter()
    source = load_source(migrations_dir)
    downs = load_downs(migrations_dir)
    plan = plan_revert(source, downs, read_only_ledger(db_path, source), target)
    _refuse_if_blocked(plan)
    if not plan.steps:
        return RevertOutcome(plan, plan.schema_version, [], None, time.perf_counter() - started)

    db_path = Path(db_path)
    reverted: list[int] = []
    with ExitStack() as held:
        # 1. The migration lock, then the plan again on the ledger as it is now.
        with storage_errors(db_path):
            held.enter_context(migration_lock(db_path, lock_timeout))
            db_fd = open_database_file(db_path)
            held.callback(os.close, db_fd)
            with sqlite_errors(db_path):
                conn = open_for_migration(db_path)
            held.callback(conn.close)
        with sqlite_errors(db_path):
            current = ledger.read_ledger(conn, checksums(source))
            plan = plan_revert(source, downs, current, target)
            _refuse_if_blocked(plan)
            if on_plan:
                on_plan(plan)
            # 2. Nobody else may have the database open: the schema it expects is going away.
            users = UsersLock(db_path)
            held.callback(users.release)
            users.take_exclusive("revert the schema")
            # 3. The backup, before any down step.
            if on_progress:
                on_progress(Progress(None, BACKUP, 0, len(plan.steps), BACKUP))
            backup = take_backup(conn, db_fd, db_path, plan.schema_version, BackupKind.REVERT)
            log.info("backed up the database to %s before reverting", backup.path)
            with transaction(conn):
                ledger.ensure_tables(conn)
        # 4. The down steps, newest first, each atomic with its bookkeeping.
        steps = plan.steps
        for index, step in enumerate(steps, start=1):
            if on_progress:
                on_progress(
                    Progress(step.version, step.description, index, len(steps), Action.REVERT)
                )
            down = plan.downs[step.version]
            try:
                _revert_step(conn, step, down, backup, daemon_version)
            except sqlite3.Error as exc:
                conn.close()
                _undo_revert(db_path, backup, users, step, f"{type(exc).__name__}: {exc}", current)
            reverted.append(step.version)
            log.warning(
                "reverted migration %s (%s) with its down file; backup first: %s",
                step.version,
                step.description,
                backup.path,
            )
    schema = _after(current, reverted)
    return RevertOutcome(plan, schema, reverted, backup, time.perf_counter() - started)


def _revert_step(
    conn: sqlite3.Connection,
    step: Finding,
    down: Migration,
    backup: BackupInfo,
    daemon_version: str,
) -> None:
    """The down SQL, the ledger and provenance rows going, and the heal-log entry: one
    transaction (a `-- no-transaction` down file runs first, on its own)."""
    assert step.row is not None
    if down.no_transaction:
        for statement in statements(down.text):
            conn.execute(statement)
    with transaction(conn):
        if not down.no_transaction:
            for statement in statements(down.text):
                conn.execute(statement)
        ledger.forget(conn, step.version, step.row.checksum)
        ledger.append_heal(
            conn,
            ledger.HealRecord(
                step.version,
                "revert",
                f"{step.evidence} (down file SHA-384 {down.checksum.hex()[:16]}); the "
                "migration's ledger and provenance rows were removed",
                step.row.checksum,
                down.checksum,
                str(backup.path),
                daemon_version,
            ),
        )


def _undo_revert(
    db_path: Path,
    backup: BackupInfo,
    users: UsersLock,
    step: Finding,
    detail: str,
    current: ledger.Ledger,
) -> NoReturn:
    """A down step failed: put back the backup taken before the revert, so a revert is all or
    nothing (the steps before it are undone too), and raise what happened."""
    try:
        restore_backup(db_path, backup.path, users)
    except (MigrateError, OSError, sqlite3.Error) as exc:
        raise RevertFailed(
            step.version,
            step.description,
            detail,
            backup=str(backup.path),
            restore_failed=str(exc),
        ) from exc
    log.error(
        "reverting migration %s (%s) failed (%s); restored the backup taken before the revert "
        "(%s): the database is at schema version %s, as before the revert",
        step.version,
        step.description,
        detail,
        backup.path,
        current.schema_version,
    )
    raise RevertFailed(
        step.version,
        step.description,
        detail,
        backup=str(backup.path),
        restored_to=current.schema_version,
    )


def _after(current: ledger.Ledger, reverted: list[int]) -> int | None:
    """The schema version once the versions in `reverted` are gone."""
    left = [v for v, row in current.rows.items() if row.success and v not in reverted]
    return max(left, default=None)


def _refuse_if_blocked(plan: RevertPlan) -> None:
    if plan.blockers:
        raise Blocked([f.as_blocker() for f in plan.blockers], doing="revert")
