"""One migration run, read top to bottom in `run_migrations`: plan without a lock; if there is
work, take the migration lock, re-read the ledger and plan again, take the users lock
exclusively when a step cannot be rolled back, back up if any SQL will run, carry out the
steps, and record what was applied.

The reading helpers at the end (read_only_ledger, checksums, history_if_needed, and the error
translations sqlite_errors / storage_errors) are shared with revert.py and accept.py, which
follow the same discipline.

Refusals (a blocked plan, an unreadable database, a broken migrations folder, a database
another process has open when a step would need a restore) are raised before anything is
written, so they always mean "nothing was changed".
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from daemon.migrate.errors import (
    Blocked,
    DatabaseLocked,
    DatabaseUnreadable,
    DiskFull,
    StorageError,
)
from daemon.migrate.ledger import (
    EMPTY_LEDGER,
    HealEntry,
    Ledger,
    count_heals,
    has_user_tables,
    read_heal_log,
    read_ledger,
)
from daemon.migrate.plan import BACKUP, Action, Plan, State, make_plan, needs_history
from daemon.migrate.source import Migration, has_down_file, load_source

# An I/O error with less free space than this is the disk being full (see _out_of_space).
LOW_SPACE_BYTES = 1024 * 1024
# A no-op run must cost little more than reading the ledger and hashing the files, so modules
# only a real run needs (executor, backup, lock, logging, typing) are imported when needed.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from os import PathLike
    from pathlib import Path

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
        from daemon.migrate.downgrade import revert_then_run

        return revert_then_run(
            db_path,
            migrations_dir,
            plan,
            source,
            idempotent=idempotent,
            daemon_version=daemon_version,
            on_progress=on_progress,
            lock_timeout=lock_timeout,
            started=started,
        )
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


def checksums(source: list[Migration]) -> dict[int, bytes]:
    return {m.version: m.checksum for m in source}


def read_only_ledger(db_path: str | PathLike[str], source: list[Migration]) -> Ledger:
    if not os.path.exists(db_path):
        return EMPTY_LEDGER
    with sqlite_errors(db_path):
        conn = connect_for_reading(db_path)
        try:
            return read_ledger(conn, checksums(source))
        finally:
            conn.close()


def connect_for_reading(db_path: str | PathLike[str]) -> sqlite3.Connection:
    """A plain connection; on a read-only volume, where a WAL database cannot create its -shm
    file, an immutable one, which is exact as long as no -wal file holds unmerged pages."""
    try:
        conn = sqlite3.connect(db_path, timeout=30.0)
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1")
        return conn
    except sqlite3.OperationalError:
        wal = f"{os.fspath(db_path)}-wal"
        if os.access(os.path.dirname(os.path.abspath(db_path)), os.W_OK) or (
            os.path.exists(wal) and os.path.getsize(wal) > 0
        ):
            raise
        from urllib.parse import quote

        uri = f"file:{quote(os.path.abspath(db_path))}?mode=ro&immutable=1"
        return sqlite3.connect(uri, uri=True)


@contextmanager
def sqlite_errors(db_path: str | PathLike[str]) -> Iterator[None]:
    """Name what went wrong for the operator: a full disk, a volume we cannot write to, or a
    file that is not a database; a database another process holds in a write transaction is
    DatabaseLocked."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        text = str(exc)
        if is_locked(exc):
            raise DatabaseLocked(os.path.abspath(db_path), text) from None
        folder = os.path.dirname(os.path.abspath(db_path))
        free = _free_bytes(folder)
        if _out_of_space(exc, free):
            from pathlib import Path

            from daemon.migrate.backup import backups_dir

            backups = str(backups_dir(Path(db_path)))
            raise DiskFull(folder, free or 0, text, backups) from None
        if "readonly" in text or "read-only" in text:
            raise StorageError(folder, text) from None
        raise DatabaseUnreadable(os.fspath(db_path), text) from None


def _out_of_space(exc: sqlite3.DatabaseError, free: int | None) -> bool:
    """SQLITE_FULL, or an I/O error on a volume with almost no space left: opening a WAL
    database creates or grows its shared-memory file (32 KiB) and WAL, and SQLite reports a
    failure to grow the shared memory as "disk I/O error" (SQLITE_IOERR_SHMSIZE)."""
    primary = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    if primary == sqlite3.SQLITE_FULL or "disk is full" in str(exc):
        return True
    return primary == sqlite3.SQLITE_IOERR and free is not None and free < LOW_SPACE_BYTES


def _free_bytes(folder: str) -> int | None:
    """Bytes an unprivileged writer may still use on the folder's volume; None if unknown."""
    try:
        stat = os.statvfs(folder)
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize


def is_locked(exc: sqlite3.Error) -> bool:
    """Another connection holds the lock SQLite needed, past the busy timeout."""
    text = str(exc)
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def probe_write_lock(conn: sqlite3.Connection) -> None:
    """Take and drop the write lock: raises `database is locked` now, before a backup is
    taken, when another process holds a write transaction (BEGIN EXCLUSIVE) on the file."""
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("ROLLBACK")


@contextmanager
def storage_errors(db_path: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise StorageError(str(db_path.parent), exc.strerror or str(exc)) from None
