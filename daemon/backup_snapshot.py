"""`python -m daemon backup snapshot | restore`: StartOS backups that never hold a torn database.

A StartOS 0.4 backup copies the data volume file by file (rsync) while the daemon may be
writing. A live SQLite file copied that way, with or without its WAL, can be a state that never
existed. So the package's pre-backup hook runs `snapshot`: SQLite's online backup writes a
consistent copy into `backup-snapshot/` (a `.partial`, fsynced, checked, then renamed), and the
backup excludes the live database, its WAL, shared memory and lock files. After StartOS restores
the volume, `restore` checks the snapshot and puts it in place as the database.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path

from daemon.remedies import startos_words
from daemon.settings import Settings, SettingsError

SNAPSHOT_DIR = "backup-snapshot"
EXIT_OK, EXIT_ERROR = 0, 1
# A writer holding the database longer than this would be a fault; the backup waits this long.
BUSY_TIMEOUT = 30.0


class BackupError(Exception):
    """A snapshot or restore that did not happen; the message says why and what to do."""


def snapshot_path(db_path: Path) -> Path:
    return db_path.parent / SNAPSHOT_DIR / db_path.name


def backup_main(step: str) -> int:
    try:
        settings = Settings.from_env()
        done = take_snapshot(settings.db_path) if step == "snapshot" else restore(settings.db_path)
    except (BackupError, SettingsError) as error:
        print(str(error), file=sys.stderr)
        return EXIT_ERROR
    print(done)
    return EXIT_OK


def take_snapshot(db_path: Path) -> str:
    """Copy the live database consistently into backup-snapshot/, safe while the daemon writes."""
    target = snapshot_path(db_path)
    if not db_path.exists():
        # A stale snapshot must not bring back data into a backup of a volume that has none.
        target.unlink(missing_ok=True)
        return (
            f"No database at {db_path} yet (Keysmith has not started): the backup holds no "
            "licensing data, and nothing needs a snapshot."
        )
    partial = target.with_name(target.name + ".partial")
    try:
        target.parent.mkdir(mode=0o700, exist_ok=True)
        partial.unlink(missing_ok=True)
        os.close(os.open(partial, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        _online_backup(db_path, partial)
        verdict = _integrity(partial)
        if verdict != "ok":
            raise sqlite3.DatabaseError(f"the copy fails its integrity check: {verdict}")
        os.replace(partial, target)
        _fsync_dir(target.parent)
    except (sqlite3.Error, OSError) as error:
        partial.unlink(missing_ok=True)
        raise BackupError(
            f"The database snapshot for the backup failed ({error}). The live database was "
            "only read and is intact; the backup must not go ahead without a snapshot. Check "
            "the free space on the data volume, then back up again."
        ) from None
    size = target.stat().st_size
    return f"Snapshot of {db_path} written to {target} ({size} bytes, integrity ok)."


def _online_backup(db_path: Path, dest: Path) -> None:
    source = sqlite3.connect(db_path, timeout=BUSY_TIMEOUT)
    try:
        target = sqlite3.connect(dest)
        try:
            # The copy is scratch until checked and renamed: no journal, no syncs meanwhile.
            target.execute("PRAGMA journal_mode=OFF")
            target.execute("PRAGMA synchronous=OFF")
            # pages=-1 (the default): one step under one read transaction, so the copy is a
            # single committed state, whatever other processes write meanwhile.
            source.backup(target)
            target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal
        finally:
            target.close()
    finally:
        source.close()
    with open(dest, "rb") as handle:
        os.fsync(handle.fileno())


def restore(db_path: Path) -> str:
    """Put the restored volume's snapshot in place as the database; refuse rather than guess."""
    from daemon.migrate import DatabaseInUse, LockTimeout, OrphanedWal, RestoreRefused
    from daemon.migrate.backup import restore_backup
    from daemon.migrate.lock import UsersLock, migration_lock

    snapshot = snapshot_path(db_path)
    if not snapshot.exists():
        if db_path.exists():
            return f"No snapshot in {snapshot.parent}; the database {db_path} is used as it is."
        return (
            f"The backup holds no database snapshot ({snapshot} is absent): it was taken "
            "before Keysmith first started. Keysmith creates a new database when it starts."
        )
    verdict = _integrity(snapshot)
    if verdict != "ok":
        raise BackupError(
            f"The snapshot {snapshot} is damaged ({verdict}). Nothing was changed. Restore an "
            "older StartOS backup of Keysmith."
        )
    if db_path.exists():
        if db_path.read_bytes() == snapshot.read_bytes():
            return f"The database {db_path} already equals the snapshot; nothing to do."
        raise BackupError(
            f"A database already exists at {db_path} and differs from the snapshot {snapshot}. "
            "Nothing was changed: restoring would replace it. If the snapshot is what you want, "
            "stop Keysmith, move the database (and its -wal and -shm files) aside, then run "
            "the restore again."
        )
    users = UsersLock(db_path)
    try:
        with migration_lock(db_path, timeout=5.0):
            # Never replace the file under a process that has it open: its writes would be lost.
            users.take_exclusive("put the backup snapshot in place")
            restore_backup(db_path, snapshot, users)
        os.chmod(db_path, 0o600)
    except (LockTimeout, DatabaseInUse):
        raise BackupError(
            "A Keysmith is running or starting on this volume right now. Nothing was changed. "
            "Stop the service, then run the restore again."
        ) from None
    except OrphanedWal as error:
        fix = startos_words(error.remedies, error.params)
        raise BackupError(f"{error} To fix: {fix}.") from None
    except (RestoreRefused, sqlite3.Error, OSError) as error:
        raise BackupError(
            f"Putting the snapshot {snapshot} in place failed ({error}). The database was not "
            "replaced and the snapshot is kept. Check the free space on the data volume, then "
            "run the restore again."
        ) from None
    finally:
        users.release()
    return f"Restored the database {db_path} from the snapshot {snapshot} (integrity ok)."


def _integrity(path: Path) -> str:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return conn.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.DatabaseError as error:
        return str(error)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
