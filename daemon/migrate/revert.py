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

from daemon.migrate import carried, ledger
from daemon.migrate.apply import Progress, open_for_migration, transaction
from daemon.migrate.backup import (
    BackupInfo,
    BackupKind,
    open_database_file,
    restore_backup,
    take_backup,
)
from daemon.migrate.errors import BadTarget, Blocked, BlockKind, MigrateError, RevertFailed
from daemon.migrate.lock import UsersLock, migration_lock
from daemon.migrate.plan import BACKUP, Action, Finding
from daemon.migrate.reading import (
    checksums,
    connect_for_reading,
    is_locked,
    probe_write_lock,
    read_only_ledger,
    sqlite_errors,
    storage_errors,
)
from daemon.migrate.revert_plan import REFUSED, RevertPlan, plan_revert
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
    dry_run: bool = False,
) -> RevertOutcome:
    """Revert the applied versions above `target` (only the newest one when None), newest
    first. Raises BadTarget for a `target` that is neither applied nor 0, and Blocked when any
    of them cannot be reverted, both before anything changes. `dry_run`: plan only.
    `on_plan` is shown the plan it will carry out (each step's evidence names what its down
    file discards) once it holds the lock, before anything is written."""
    started = time.perf_counter()
    source = load_source(migrations_dir)
    downs = load_downs(migrations_dir)
    line = carried.lineage(migrations_dir, source)
    before = read_only_ledger(db_path, source)
    check_target(before, target)
    plan = plan_revert(source, downs, before, target, read_only_stored(db_path), line)
    _refuse_if_blocked(plan)
    if not plan.steps or dry_run:
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
            check_target(current, target)
            plan = plan_revert(source, downs, current, target, carried.read_stored(conn), line)
            _refuse_if_blocked(plan)
            if on_plan:
                on_plan(plan)
            # 2. Nobody else may have the database open: the schema it expects is going away.
            users = UsersLock(db_path)
            held.callback(users.release)
            users.take_exclusive("revert the schema")
            probe_write_lock(conn)
            # 3. Every step tried on the database as it is, then rolled back: one that would
            # fail (an accepted or hand-healed text its down does not undo) is refused here,
            # before the backup, rather than failing midway.
            _refuse_if_blocked(_tried(conn, plan))
            # 4. The backup, before any down step.
            if on_progress:
                on_progress(Progress(None, BACKUP, 0, len(plan.steps), BACKUP))
            backup = take_backup(conn, db_fd, db_path, plan.schema_version, BackupKind.REVERT)
            log.info("backed up the database to %s before reverting", backup.path)
            with transaction(conn):
                ledger.ensure_tables(conn)
        # 5. The down steps, newest first, each atomic with its bookkeeping.
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
                "reverted migration %s (%s): %s; backup first: %s",
                step.version,
                step.description,
                step.evidence,
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
                f"{step.evidence} (down text SHA-384 {down.checksum.hex()[:16]}); the "
                "migration's ledger, provenance and kept down rows were removed",
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


def check_target(current: ledger.Ledger, target: int | None) -> None:
    """A revert goes back to an applied version, or to 0 (no schema): sqlx refuses a target
    that does not exist rather than reverting nothing or everything."""
    if target is not None and target != 0 and target not in current.rows:
        raise BadTarget(target, sorted(current.rows))


def read_only_stored(db_path: str | os.PathLike[str]) -> dict[int, carried.Stored]:
    if not os.path.exists(db_path):
        return {}
    with sqlite_errors(db_path):
        conn = connect_for_reading(db_path)
        try:
            return carried.read_stored(conn)
        finally:
            conn.close()


def _tried(conn: sqlite3.Connection, plan: RevertPlan) -> RevertPlan:
    """The plan, with the first step whose down text fails on this database (all run in one
    transaction, rolled back) turned into a blocker. `-- no-transaction` downs are not tried:
    they cannot be rolled back."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for step in plan.steps:
            down = plan.downs[step.version]
            if down.no_transaction:
                continue
            try:
                for statement in statements(down.text):
                    conn.execute(statement)
            except sqlite3.Error as exc:
                if is_locked(exc):
                    raise
                return _blocked_step(plan, step, f"{type(exc).__name__}: {exc}")
    finally:
        conn.execute("ROLLBACK")
    return plan


def _blocked_step(plan: RevertPlan, step: Finding, detail: str) -> RevertPlan:
    refused = Finding(
        version=step.version,
        description=step.description,
        state=step.state,
        action=Action.BLOCKED,
        evidence=f"cannot be reverted: its down text fails on this database ({detail}), tried "
        "in a transaction that was rolled back; the database holds something other than what "
        "the down text undoes",
        remedies=REFUSED,
        kind=BlockKind.DOWN_FAILS,
        row=step.row,
    )
    findings = [refused if f is step else f for f in plan.findings]
    return plan._replace(findings=findings)


def _after(current: ledger.Ledger, reverted: list[int]) -> int | None:
    """The schema version once the versions in `reverted` are gone."""
    left = [v for v, row in current.rows.items() if row.success and v not in reverted]
    return max(left, default=None)


def _refuse_if_blocked(plan: RevertPlan) -> None:
    if plan.blockers:
        raise Blocked([f.as_blocker() for f in plan.blockers], doing="revert")
