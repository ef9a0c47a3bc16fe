"""Carry out a plan: re-stamps, re-runs and pending migrations, each in its own transaction
together with its ledger, provenance and heal-log rows, so a failure leaves nothing half-done.

Statements are executed one by one inside an explicit BEGIN IMMEDIATE ... COMMIT (never
`executescript()`, which would COMMIT first). A `-- no-transaction` file cannot be rolled back,
so its failure, or a failure to record it in the ledger after its statements ran, restores the
backup taken before any SQL ran; the runner holds the users lock
exclusively for such a run, so nothing else has the database open when that happens.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from collections import namedtuple
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from os import PathLike
from pathlib import Path

from daemon.migrate import ledger
from daemon.migrate.backup import BackupInfo, restore_backup
from daemon.migrate.errors import MigrationFailed
from daemon.migrate.lock import UsersLock
from daemon.migrate.plan import Action, Finding, Plan
from daemon.migrate.private import create_private
from daemon.migrate.reading import is_locked
from daemon.migrate.source import Migration

TYPE_CHECKING = False
if TYPE_CHECKING:
    from daemon.migrate.errors import FailedWhile

LOGGER = "keysmith.migrate"
BOM = "\ufeff"

CONNECTION_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=5000",
)


# namedtuples rather than dataclasses: importing dataclasses costs a run with one pending
# migration more than applying it.

# Before each step: version (None for the backup), description, index, total, and action
# (an Action, or BACKUP for the backup).
Progress = namedtuple("Progress", "version description index total action")
# One heal: version, description, action (Action.RESTAMP | Action.RERUN), evidence, old and new
# checksum (hex), and the backup taken before it (a re-run) or None (a re-stamp runs no SQL).
HealEvent = namedtuple(
    "HealEvent", "version description action evidence old_checksum new_checksum backup_path"
)


ProgressCallback = Callable[[Progress], None]


def open_for_migration(db_path: Path) -> sqlite3.Connection:
    """Autocommit mode: every transaction below is opened and closed explicitly. A database
    created here is created 0600, and so are its -wal and -shm (SQLite gives them its mode)."""
    create_private(db_path)
    conn = sqlite3.connect(db_path, isolation_level=None, timeout=5.0)
    for pragma in CONNECTION_PRAGMAS:
        conn.execute(pragma)
    return conn


class Executor:
    """Carries out a plan's steps on one open connection, under the migration lock.
    `users` is the users lock, held exclusively when the plan has a step that cannot be rolled
    back (and then `backup` is set)."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        db_path: Path,
        daemon_version: str,
        backup: BackupInfo | None,
        users: UsersLock,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        self.conn = conn
        self.db_path = db_path
        self.daemon_version = daemon_version
        self.backup = backup
        self.users = users
        self.on_progress = on_progress
        self.schema_before: int | None = None
        self.applied: list[int] = []
        self.heals: list[HealEvent] = []

    def run_steps(self, plan: Plan) -> list[Migration]:
        """Every step in order; returns the migrations applied (their text is kept after)."""
        self.schema_before = plan.schema_version
        with transaction(self.conn):
            ledger.ensure_tables(self.conn)
        fresh: list[Migration] = []
        steps = plan.steps
        for index, step in enumerate(steps, start=1):
            if self.on_progress:
                self.on_progress(
                    Progress(step.version, step.description, index, len(steps), step.action)
                )
            if step.action is Action.RESTAMP:
                self.heals.append(self._restamp(step))
            elif step.action is Action.RERUN:
                self.heals.append(self._rerun(step))
            else:
                self._run(_migration(step))
                fresh.append(_migration(step))
                self.applied.append(step.version)
                log_info("applied migration %s (%s)", step.version, step.description)
        return fresh

    def keep_texts(
        self,
        migrations: list[Migration],
        carry: list[Migration],
        folder: str | PathLike[str],
        source: list[Migration],
    ) -> None:
        """Provenance for versions whose ledger checksum matches today's file: the ones just
        applied, and any without it yet (a database taken over from sqlx); and the down text of
        each of `carry` that has one, kept with the data (carried.py). One transaction for
        all: it is our own bookkeeping, and a version a crash leaves without it is found and
        recorded by the next run."""
        downs: dict[int, Migration] = {}
        if carry:
            from daemon.migrate import carried
            from daemon.migrate.source import load_downs

            downs = load_downs(folder)
            line = carried.lineage(folder, source)
        with transaction(self.conn):
            for migration in migrations:
                self._record(migration)
            if downs:
                carried.store(self.conn, carry, downs, line)

    def _restamp(self, step: Finding) -> HealEvent:
        migration, row = _migration(step), step.row
        assert row is not None
        with transaction(self.conn):
            ledger.restamp(self.conn, step.version, row.checksum, migration.checksum)
            self._record(migration)
            heal = self._log_heal(step)
        _logger().warning(
            "self-healed migration %s (%s): re-stamped its checksum; no SQL ran and no data "
            "changed",
            step.version,
            step.description,
            extra={"context": _context(heal)},
        )
        return heal

    def _rerun(self, step: Finding) -> HealEvent:
        heal = self._run(_migration(step), heal_of=step)
        assert heal is not None
        _logger().warning(
            "self-healed migration %s (%s): ran it again (certified idempotent) in one "
            "transaction, after a backup to %s",
            step.version,
            step.description,
            heal.backup_path,
            extra={"context": _context(heal)},
        )
        return heal

    def _run(self, migration: Migration, heal_of: Finding | None = None) -> HealEvent | None:
        started = time.perf_counter_ns()
        if migration.no_transaction:
            from daemon.migrate.sqltext import statements  # only such a file is split here

            try:
                for statement in statements(migration.text):
                    self.conn.execute(statement)
            except sqlite3.Error as exc:
                raise self._undo_run(migration, exc, "executing") from exc
        try:
            # The script runs as the transaction's first statements, in one call (SQLite splits
            # it, in C); a re-run removes its ledger row after, in the same transaction.
            script = None if migration.no_transaction else migration.text
            with transaction(self.conn, script):
                if heal_of is not None:
                    ledger.delete_row(self.conn, migration.version)
                elapsed = time.perf_counter_ns() - started
                ledger.insert_applied(
                    self.conn,
                    migration.version,
                    migration.description,
                    migration.checksum,
                    elapsed,
                )
                heal = None
                if heal_of is not None:
                    self._record(migration)
                    heal = self._log_heal(heal_of)
        except sqlite3.Error as exc:
            if not migration.no_transaction and is_locked(exc):
                raise  # nothing of it ran: the runner reports the lock (DatabaseLocked)
            if migration.no_transaction:
                # Its statements are committed but not in the ledger: left so, the next run
                # would run them again on top of themselves and fail at every run after.
                raise self._undo_run(migration, exc, "recording") from exc
            raise MigrationFailed(migration.version, migration.description, _describe(exc)) from exc
        return heal

    def _undo_run(
        self, migration: Migration, exc: sqlite3.Error, failed_while: FailedWhile
    ) -> MigrationFailed:
        """A no-transaction migration failed: restore the backup taken before this run, and say
        so, with the earlier steps of this run it undid too."""
        self._restore_backup()
        return MigrationFailed(
            migration.version,
            migration.description,
            _describe(exc),
            failed_while=failed_while,
            restored=True,
            restored_to=self.schema_before,
            undone=tuple(sorted({*self.applied, *(heal.version for heal in self.heals)})),
        )

    def _restore_backup(self) -> None:
        """Everything since the backup is undone, earlier steps of this run included: the
        statements already run cannot be rolled back one by one."""
        assert self.backup is not None, "a run with a no-transaction step always backs up"
        self.conn.close()
        restore_backup(self.db_path, self.backup.path, self.users)

    def _record(self, migration: Migration) -> None:
        ledger.record_provenance(
            self.conn, migration.version, migration.sql_bytes, migration.checksum
        )

    def _log_heal(self, step: Finding) -> HealEvent:
        """The heal-log row, in the step's own transaction. A re-run names the backup taken
        before it; a re-stamp ran no SQL and needed none."""
        migration, row = _migration(step), step.row
        old = row.checksum if row else None
        rerun_with_backup = step.action is Action.RERUN and self.backup is not None
        backup_path = str(self.backup.path) if rerun_with_backup else None
        ledger.append_heal(
            self.conn,
            ledger.HealRecord(
                step.version,
                step.action,
                step.evidence,
                old,
                migration.checksum,
                backup_path,
                self.daemon_version,
            ),
        )
        return HealEvent(
            step.version,
            step.description,
            step.action,
            step.evidence,
            (old or b"").hex(),
            migration.checksum.hex(),
            backup_path,
        )


def log_info(message: str, *args: object) -> None:
    """An INFO record reaches a handler only where logging was configured, which imports the
    module; where it is not imported (the command line) the record would be dropped anyway, so
    such a run never pays for importing logging (a fifth of a 1,000-migration run's Python)."""
    logging = sys.modules.get("logging")
    if logging is not None:
        logging.getLogger(LOGGER).info(message, *args)


def _logger():  # warnings always reach stderr (logging's last resort), so they import it
    import logging

    return logging.getLogger(LOGGER)


@contextmanager
def transaction(conn: sqlite3.Connection, script: str | None = None) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT; anything that fails, COMMIT included (deferred foreign keys
    are checked there), rolls the whole transaction back. `script`: SQL run right after BEGIN,
    in the same `executescript` call (which COMMITs only a transaction already open, and none
    is), so no statement of it runs outside the transaction."""
    try:
        if script is None:
            conn.execute("BEGIN IMMEDIATE")
        else:
            # A BOM is not SQL; the newline ends a final `--` comment, `;` a final statement.
            conn.executescript(f"BEGIN IMMEDIATE;\n{script.removeprefix(BOM)}\n;")
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _migration(step: Finding) -> Migration:
    assert step.migration is not None
    return step.migration


def _describe(exc: sqlite3.Error) -> str:
    return f"{type(exc).__name__}: {exc}"


def _context(heal: HealEvent) -> dict[str, object]:
    return {
        "version": heal.version,
        "action": heal.action,
        "evidence": heal.evidence,
        "old_checksum": heal.old_checksum[:16],
        "new_checksum": heal.new_checksum[:16],
        "backup": heal.backup_path or "none",
    }
