"""One migration run, read top to bottom in `run_migrations`: plan without a lock; if there is
work, take the migration lock, re-read the ledger and plan again, take the users lock
exclusively when a step cannot be rolled back, back up if any SQL will run, carry out the
steps, and record what was applied.

The reading helpers (read_only_ledger, checksums, the error translations sqlite_errors /
storage_errors) live in reading.py, shared with revert.py and accept.py, which follow the same
discipline; history_if_needed is here.

Refusals (a blocked plan, an unreadable database, a broken migrations folder, a database
another process has open when a step would need a restore) are raised before anything is
written, so they always mean "nothing was changed".
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable

from daemon.migrate.errors import Blocked, DatabaseLocked
from daemon.migrate.ledger import (
    HealEntry,
    Ledger,
    count_heals,
    has_user_tables,
    read_heal_log,
    read_ledger,
)
from daemon.migrate.plan import BACKUP, Action, Plan, State, make_plan, needs_history
from daemon.migrate.reading import (
    checksums,
    connect_for_reading,
    is_locked,
    probe_write_lock,
    read_only_ledger,
    sqlite_errors,
    storage_errors,
)
from daemon.migrate.source import Migration, has_down_file, load_source

# A no-op run must cost little more than reading the ledger and hashing the files, so modules
# only a real run needs (executor, backup, lock, logging, typing) are imported when needed.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from os import PathLike

    from daemon.migrate.apply import HealEvent, Progress
    from daemon.migrate.backup import BackupInfo
    from daemon.migrate.history import History


class Outcome:
    """What a run did: the plan it followed, the schema version after it, the versions applied,
    the heals (HealEvent), the backup taken (BackupInfo or None), its duration, and how many
    migrations are still pending (only with a target version)."""

    def __init__(
        self,
        plan: Plan,
        schema_version: int | None,
        applied: list[int] | None = None,
        heals: list[HealEvent] | None = None,
        backup: BackupInfo | None = None,
        pending: int = 0,
    ) -> None:
        self.plan = plan
        self.schema_version = schema_version
        self.applied = applied or []
        self.heals = heals or []
        self.backup = backup
        self.seconds = 0.0
        self.pending = pending


def inspect(
    db_path: str | PathLike[str],
    migrations_dir: str | PathLike[str],
    idempotent: frozenset[int],
    target: int | None = None,
) -> Plan:
    """The plan a run would carry out. Reads only; never creates the database file."""
    source = load_source(migrations_dir)
    ledger = read_only_ledger(db_path, source)
    return make_plan(
        source, ledger, idempotent, target, history_if_needed(migrations_dir, source, ledger)
    )


def run_migrations(
    db_path: str | PathLike[str],
    migrations_dir: str | PathLike[str],
    *,
    idempotent: frozenset[int],
    daemon_version: str,
    target: int | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    lock_timeout: float = 30.0,
    revert_newer: bool = False,
) -> Outcome:
    """Bring the database up to the migrations folder (up to `target`, when given).

    `revert_newer` (a release booting on a database a newer release migrated): versions newer
    than every file in the folder are reverted first with the down texts kept with the data,
    when each one's is trusted (see carried.py); otherwise the run is refused as before.

    `on_progress` is called before the backup and before each step; it may raise Interrupted
    to stop the run there (each step is atomic, so a stop between steps is always safe).
    Raises a MigrateError for every refusal or failure.
    """
    started = time.perf_counter()
    source = load_source(migrations_dir)
    ledger = read_only_ledger(db_path, source)
    history = history_if_needed(migrations_dir, source, ledger)
    plan = make_plan(source, ledger, idempotent, target, history)
    if revert_newer and plan.blockers and _only_newer(plan, source):
        from daemon.migrate.downgrade import record_reverts, revert_newer_versions

        reverted = revert_newer_versions(
            db_path,
            migrations_dir,
            plan,
            source,
            daemon_version=daemon_version,
            on_progress=on_progress,
            lock_timeout=lock_timeout,
        )
        outcome = run_migrations(
            db_path,
            migrations_dir,
            idempotent=idempotent,
            daemon_version=daemon_version,
            on_progress=on_progress,
            lock_timeout=lock_timeout,
        )
        record_reverts(outcome, reverted)
        outcome.seconds = time.perf_counter() - started
        return outcome
    _refuse_if_blocked(plan)
    if not plan.changes_anything:  # the no-op fast path: no lock, no write, no extra import
        outcome = Outcome(plan, plan.schema_version)
        outcome.seconds = time.perf_counter() - started
        return outcome

    # Imported here so a no-op run never pays for them.
    from contextlib import ExitStack
    from pathlib import Path

    from daemon.migrate.apply import Executor, Progress, log_info, open_for_migration
    from daemon.migrate.backup import open_database_file, take_backup
    from daemon.migrate.lock import UsersLock, migration_lock

    db_path = Path(db_path)
    with ExitStack() as held:
        # 1. The migration lock: one migrator per database file.
        with storage_errors(db_path):
            db_path.parent.mkdir(parents=True, exist_ok=True)
            held.enter_context(migration_lock(db_path, lock_timeout))
            db_fd = open_database_file(db_path)
            held.callback(os.close, db_fd)  # runs after conn.close: see open_database_file
            with sqlite_errors(db_path):
                conn = open_for_migration(db_path)
            held.callback(conn.close)
        # 2. Re-read the ledger under the lock and plan again: another run may have gone first.
        with sqlite_errors(db_path):
            current = read_ledger(conn, checksums(source))
            if current != ledger:  # another run went first: plan again on what it left
                if history is None:
                    history = history_if_needed(migrations_dir, source, current)
                plan = make_plan(source, current, idempotent, target, history)
                _refuse_if_blocked(plan)
            # 3. A step that cannot be rolled back is undone by restoring the backup, which
            # must not happen under another process: hold the users lock exclusively, or
            # refuse now, before the backup and before any SQL.
            users = UsersLock(db_path)
            held.callback(users.release)
            if plan.runs_outside_a_transaction:
                users.take_exclusive("run a migration that cannot be rolled back")
            probe_write_lock(conn)
            # 4. The backup, before any SQL runs; always before a step that cannot be rolled
            # back, even on an empty database, so its failure can return to where it began.
            backup = None
            if plan.runs_sql and (
                current.rows or plan.runs_outside_a_transaction or has_user_tables(conn)
            ):
                if on_progress:
                    on_progress(Progress(None, BACKUP, 0, len(plan.steps), BACKUP))
                backup = take_backup(conn, db_fd, db_path, plan.schema_version)
                log_info("backed up the database to %s before migrating", backup.path)
        # 5. The steps, each atomic with its ledger row (or undone by the backup).
        executor = Executor(conn, db_path, daemon_version, backup, users, on_progress)
        try:
            fresh = executor.run_steps(plan)
        except sqlite3.OperationalError as exc:
            if not is_locked(exc):
                raise
            # Taken between the probe and a step: what ran stays (each step is atomic); a
            # backup no step came after is not left behind.
            if backup is not None and not executor.applied and not executor.heals:
                backup.path.unlink(missing_ok=True)
            done = tuple(executor.applied)
            raise DatabaseLocked(str(db_path.absolute()), str(exc), done) from None
        # 6. Record the text of what was applied, for the proofs of later runs.
        healed = [s.migration for s in plan.steps if s.action is not Action.APPLY]
        carry = [*plan.missing_downs, *(m for m in [*fresh, *healed] if has_down_file(m))]
        executor.keep_texts([*plan.missing_provenance, *fresh], carry, migrations_dir, source)

    done = {v for v, row in current.rows.items() if row.success}
    done |= set(executor.applied) | {heal.version for heal in executor.heals}
    pending = sum(1 for m in source if m.version not in current.rows and m.version not in done)
    outcome = Outcome(
        plan, max(done, default=None), executor.applied, executor.heals, backup, pending=pending
    )
    outcome.seconds = time.perf_counter() - started
    return outcome


def _only_newer(plan: Plan, source: list[Migration]) -> bool:
    """Whether every blocker is a version applied by a newer release: missing from the folder
    and above its newest file (a gap below it is not a downgrade this release can undo)."""
    newest = max((m.version for m in source), default=0)
    return all(f.state is State.MISSING and f.version > newest for f in plan.blockers)


def _refuse_if_blocked(plan: Plan) -> None:
    # Raised, not logged: the caller (the daemon's boot, the CLI) reports it once, its own way.
    if plan.blockers:
        raise Blocked([f.as_blocker() for f in plan.blockers])


def heals_recorded(db_path: str | PathLike[str]) -> int:
    """How many heals this database has seen, from its append-only heal log."""
    if not os.path.exists(db_path):
        return 0
    with sqlite_errors(db_path):
        conn = connect_for_reading(db_path)
        try:
            return count_heals(conn)
        finally:
            conn.close()


def heal_history(db_path: str | PathLike[str]) -> list[HealEntry]:
    """This database's heal log, newest first (empty when there is no database yet)."""
    if not os.path.exists(db_path):
        return []
    with sqlite_errors(db_path):
        conn = connect_for_reading(db_path)
        try:
            return read_heal_log(conn)
        finally:
            conn.close()


def history_if_needed(
    migrations_dir: str | PathLike[str], source: list[Migration], ledger: Ledger
) -> History | None:
    """The folder's history lock, read only when some checksum differs (see needs_history)."""
    if not needs_history(source, ledger):
        return None
    from daemon.migrate.history import load_history

    return load_history(migrations_dir)
