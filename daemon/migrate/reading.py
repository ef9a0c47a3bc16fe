"""Reading a database file the way every migrator command does: a read-only ledger, a
connection that also works on a read-only volume, and SQLite's and the filesystem's errors
translated into what the operator can act on (a full disk, a locked or unreadable file, a
volume that cannot be written). Shared by runner, revert, accept and apply; it imports none of
them, so the migrator's modules import one way.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from daemon.migrate.errors import DatabaseLocked, DatabaseUnreadable, DiskFull, StorageError
from daemon.migrate.ledger import EMPTY_LEDGER, Ledger, read_ledger
from daemon.migrate.source import Migration

TYPE_CHECKING = False
if TYPE_CHECKING:
    from os import PathLike
    from pathlib import Path

# An I/O error with less free space than this is the disk being full (see _out_of_space).
LOW_SPACE_BYTES = 1024 * 1024


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
