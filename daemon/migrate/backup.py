"""Backups taken before any migration SQL runs, and restoring one.

A backup is a consistent copy of the database: its bytes, copied under the write lock once the
WAL is merged into it, or, when readers keep the WAL from merging, SQLite's online backup. It is
written to a temporary name, fsynced, then renamed into `backups/` beside the database, so a
half-written backup never looks like a real one. We refuse up front when the volume cannot hold
it, and keep only the newest few. Backups hold everything the database holds, so they are
created 0600 in a 0700 folder.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from collections import namedtuple
from enum import StrEnum
from pathlib import Path

from daemon.migrate.errors import BackupRefused, OrphanedWal, RestoreRefused
from daemon.migrate.lock import UsersLock
from daemon.migrate.private import create_private, make_private_folder

BACKUP_DIR = "backups"
KEEP_BACKUPS = 5
# Room for the copy plus a margin for the WAL the migration itself will write.
_HEADROOM = 1.2
_MIN_FREE_BYTES = 8 * 1024 * 1024


class BackupKind(StrEnum):
    """What a backup was taken before; the part of its name between the stamp and the schema
    version. A restore of "the backup taken before the upgrade" lists only UPGRADE ones."""

    # `…-pre-v14.sqlite3`: the name every release has given its pre-upgrade backups, and the
    # only one the restore action of any release (older ones too) picks.
    UPGRADE = "pre"
    # `…-pre-revert-v15.sqlite3`: taken at the newer schema before going back from it, so an
    # older release, after the downgrade, must never pick it as its pre-upgrade backup (it could
    # not run on it). Its name is one no release's pre-upgrade pattern matches.
    REVERT = "pre-revert"


_NAME = re.compile(
    r"^(?P<stem>.+)-(?P<stamp>\d{8}T\d{6}\d{6}Z)-(?P<kind>pre|pre-revert)-v(?P<schema>\w+)\.sqlite3$"
)


# path (Path), size_bytes, seconds it took (0.0 when listed), created_at (the UTC stamp in its
# name) and schema_version (the version it was taken at).
BackupInfo = namedtuple("BackupInfo", "path size_bytes seconds created_at schema_version")


def backups_dir(db_path: Path) -> Path:
    return db_path.parent / BACKUP_DIR


def open_database_file(db_path: Path) -> int:
    """A read descriptor of the database file for the fast copy, which the caller must close
    only after its SQLite connection: closing any descriptor of a file drops every POSIX lock
    this process holds on it, SQLite's included. A copy that opened and closed the file itself
    would let another process, closing its last connection, take our connection for gone and
    delete the WAL under it (committed migrations lost, readers answered "malformed").
    Creates the database (empty, 0600) when there is none yet."""
    create_private(db_path)
    return os.open(db_path, os.O_RDONLY)


def take_backup(
    conn: sqlite3.Connection,
    db_fd: int,
    db_path: Path,
    schema_version: int | None,
    kind: BackupKind = BackupKind.UPGRADE,
) -> BackupInfo:
    """A backup of the database `conn` has open; `db_fd` comes from open_database_file."""
    started = time.perf_counter()
    folder = backups_dir(db_path)
    try:
        make_private_folder(folder)
    except OSError as exc:
        raise BackupRefused(f"cannot create {folder} ({exc.strerror})", str(folder)) from None
    for stale in folder.glob("*.partial"):  # left by a migrator killed mid-backup; we hold the lock
        stale.unlink(missing_ok=True)
    _check_room(conn, folder)
    now_us = time.time_ns() // 1000
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now_us // 10**6)) + f"{now_us % 10**6:06d}Z"
    final = folder / f"{db_path.stem}-{stamp}-{kind}-v{schema_version or 0}.sqlite3"
    partial = final.with_name(final.name + ".partial")
    try:
        create_private(partial)
        _copy_consistent(conn, db_fd, db_path, partial)
        os.replace(partial, final)
        _fsync_dir(folder)
    except (sqlite3.Error, OSError) as exc:
        partial.unlink(missing_ok=True)
        raise BackupRefused(f"writing {final} failed ({exc})", str(folder)) from None
    _prune(db_path, kind)
    return BackupInfo(
        final, final.stat().st_size, time.perf_counter() - started, stamp, str(schema_version)
    )


def _check_room(conn: sqlite3.Connection, folder: Path) -> None:
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]  # a file copy takes free pages too
    needed = int(page_size * pages * _HEADROOM) + _MIN_FREE_BYTES
    import shutil  # only a backup needs it; every run that applies imports this module

    free = shutil.disk_usage(folder).free
    if free < needed:
        raise BackupRefused(
            f"the data volume has {free // 2**20} MiB free and the backup needs about "
            f"{needed // 2**20} MiB",
            str(folder),
        )


def _copy_consistent(conn: sqlite3.Connection, db_fd: int, db_path: Path, dest: Path) -> None:
    if not _copy_file_under_write_lock(conn, db_fd, db_path, dest):
        _copy_page_by_page(conn, dest)
    target = sqlite3.connect(dest)
    try:
        target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal
    finally:
        target.close()
    with open(dest, "rb") as handle:
        os.fsync(handle.fileno())


def _copy_file_under_write_lock(
    conn: sqlite3.Connection, db_fd: int, db_path: Path, dest: Path
) -> bool:
    """The fast way (about `cp` speed): merge the WAL into the file, take the write lock, and
    copy the file's bytes. Holding the write lock with an empty WAL, no connection can change
    the file while it is copied. False, having copied nothing, when readers keep the WAL from
    being merged."""
    busy, _frames, _merged = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    if busy:
        return False
    conn.execute("BEGIN IMMEDIATE")
    try:
        wal = db_path.with_name(db_path.name + "-wal")
        if wal.exists() and wal.stat().st_size > 0:
            return False  # something was written between the merge and the lock
        _copy_descriptor(db_fd, dest)
        return True
    finally:
        conn.execute("ROLLBACK")


def _copy_descriptor(source: int, dest: Path) -> None:
    """The bytes behind `source` into `dest`, leaving `source` open (see open_database_file)."""
    size = os.fstat(source).st_size
    with open(dest, "wb") as out:
        offset = 0
        while offset < size:
            offset += os.sendfile(out.fileno(), source, offset, size - offset)


def _copy_page_by_page(conn: sqlite3.Connection, dest: Path) -> None:
    """SQLite's online backup: consistent whatever readers and writers do meanwhile."""
    target = sqlite3.connect(dest)
    try:
        # No journal and no syncs while copying: the copy is a scratch file until the fsync and
        # rename make it a backup, so a crash mid-copy only leaves a .partial behind.
        target.execute("PRAGMA journal_mode=OFF")
        target.execute("PRAGMA synchronous=OFF")
        conn.backup(target)
    finally:
        target.close()


def _refuse_orphaned_wal(db_path: Path) -> None:
    """The restore deletes the -wal and -shm beside the database. With the database there, its
    log is part of it (a caller that keeps the database keeps what its log holds); without it,
    a non-empty log belongs to a file moved elsewhere, and deleting it loses its commits."""
    wal = db_path.with_name(db_path.name + "-wal")
    try:
        size = wal.stat().st_size
    except FileNotFoundError:
        return
    if size > 0 and not db_path.exists():
        raise OrphanedWal(str(wal), size, str(db_path))


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def list_backups(db_path: Path, kind: BackupKind = BackupKind.UPGRADE) -> list[BackupInfo]:
    """Backups of this database taken before `kind` of change, newest first."""
    folder = backups_dir(db_path)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _NAME.match(path.name)
        if match and match["stem"] == db_path.stem and match["kind"] == kind:
            found.append(
                BackupInfo(path, path.stat().st_size, 0.0, match["stamp"], match["schema"])
            )
    return sorted(found, key=lambda b: b.created_at, reverse=True)


def _prune(db_path: Path, kind: BackupKind) -> None:
    """The newest few of each kind stay: reverts never push out the pre-upgrade backups."""
    for old in list_backups(db_path, kind)[KEEP_BACKUPS:]:
        old.path.unlink(missing_ok=True)


def restore_backup(db_path: Path, backup: Path, users: UsersLock) -> None:
    """Replace the database with a backup. Only while no process has the database open, which
    `users` proves: the caller holds the users lock exclusively (and has closed its own
    connections)."""
    assert users.exclusive, "a restore needs the users lock held exclusively"
    _refuse_orphaned_wal(db_path)
    check = sqlite3.connect(f"file:{backup}?mode=ro", uri=True)
    try:
        verdict = check.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        check.close()
    if verdict != "ok":
        raise RestoreRefused(str(backup), verdict)
    staged = db_path.with_name(db_path.name + ".restoring")
    staged.unlink(missing_ok=True)  # left by a restore killed midway; copied afresh below
    create_private(staged)
    import shutil

    shutil.copyfile(backup, staged)
    with open(staged, "rb") as handle:
        os.fsync(handle.fileno())
    for suffix in ("-wal", "-shm"):
        db_path.with_name(db_path.name + suffix).unlink(missing_ok=True)
    os.replace(staged, db_path)
    _fsync_dir(db_path.parent)
