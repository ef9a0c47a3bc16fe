"""A cross-process lock so two processes never migrate one database file at once.

SQLite alone gives no such guarantee (sqlx takes no lock on SQLite): two daemons could both see
version 10 pending and both try it. We hold an exclusive `flock` on a file beside the database.
It is a separate file on purpose: closing any descriptor of the database file itself would drop
SQLite's own POSIX locks held by this process. The kernel releases a flock when its holder dies,
so a SIGKILLed migrator never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from daemon.migrate.errors import LockTimeout

POLL_SECONDS = 0.05


def lock_path_for(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".migrate-lock")


@contextmanager
def migration_lock(db_path: Path, timeout: float) -> Iterator[None]:
    path = lock_path_for(db_path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _acquire(fd, path, timeout)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def _acquire(fd: int, path: Path, timeout: float) -> None:
    started = time.monotonic()
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            waited = time.monotonic() - started
            if waited >= timeout:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown pid"
                raise LockTimeout(str(path), waited, holder) from None
            time.sleep(POLL_SECONDS)
