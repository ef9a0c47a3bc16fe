"""Two cross-process locks beside the database, both `flock`s on files of their own.

The migration lock (`<db>.migrate-lock`, exclusive) keeps two processes from migrating one file
at once. SQLite alone gives no such guarantee (sqlx takes no lock on SQLite): two daemons could
both see version 10 pending and both try it.

The users lock (`<db>.users-lock`) keeps a restore of the pre-migration backup from running
under a process that has the database open. A restore replaces the file and deletes its WAL;
a process with open connections keeps reading and writing the old, now unlinked, file, so
every write it acknowledges from then on is lost (issue 11: hundreds of licenses answered 201
and gone). SQLite's own locks cannot exclude this: they cover a transaction, not a connection's
lifetime. So:
  - every process that keeps the database open for normal use (a serving daemon's pool, for
    its whole life) holds the users lock *shared*;
  - the migrator, before any step whose failure would need the backup restored (a run with a
    `-- no-transaction` migration), and a restore itself, take it *exclusive without waiting*.
    If they cannot, they refuse before changing anything (DatabaseInUse), naming the cause.
Transactional migrations take neither mode: SQLite's transactions already make them safe
beside readers and writers, so several daemons may keep booting on one file.

Separate files on purpose: closing any descriptor of the database file itself would drop
SQLite's own POSIX locks held by this process. The kernel releases a flock when its holder
dies, so a SIGKILLed process never leaves a stale lock behind. Lock files are created 0600.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from daemon.migrate.errors import DatabaseInUse, LockTimeout

POLL_SECONDS = 0.05
PRIVATE = 0o600


def lock_path_for(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".migrate-lock")


def users_lock_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".users-lock")


def _open_lock_file(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE)


@contextmanager
def migration_lock(db_path: Path, timeout: float) -> Iterator[None]:
    path = lock_path_for(db_path)
    fd = _open_lock_file(path)
    try:
        _acquire(fd, path, fcntl.LOCK_EX, timeout)
        _write_holder(fd)
        yield
    finally:
        os.close(fd)  # closing releases the flock


class UsersLock:
    """The users lock of one database, held through one descriptor: shared while the database
    is open for normal use, exclusive while a restore could happen."""

    def __init__(self, db_path: Path) -> None:
        self.path = users_lock_path(Path(db_path))
        self._fd: int | None = None
        self.exclusive = False

    def take_shared(self, timeout: float) -> None:
        """Wait (up to `timeout`) for any exclusive holder to finish, then hold it shared."""
        _acquire(self._descriptor(), self.path, fcntl.LOCK_SH, timeout)

    def take_exclusive(self, why: str) -> None:
        """Hold it exclusive now, or raise DatabaseInUse: never wait, since a holder of the
        shared lock (a serving daemon) keeps it for as long as it runs."""
        fd = self._descriptor()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.release()
            raise DatabaseInUse(str(self.path), why) from None
        self.exclusive = True
        _write_holder(fd)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None
            self.exclusive = False

    def _descriptor(self) -> int:
        if self._fd is None:
            self._fd = _open_lock_file(self.path)
        return self._fd


def _write_holder(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()}\n".encode(), 0)


def _acquire(fd: int, path: Path, mode: int, timeout: float) -> None:
    started = time.monotonic()
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            waited = time.monotonic() - started
            if waited >= timeout:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown pid"
                raise LockTimeout(str(path), waited, holder) from None
            time.sleep(POLL_SECONDS)
