"""The database holds secrets (whatever the application keeps in it), so every file the
migrator makes beside it is readable by its owner only: created 0600 (folders 0700), never
widened by the umask and never left to it.

SQLite creates `-wal`, `-shm` and `-journal` with the mode of the database file itself, so
creating the database 0600 is what makes them 0600 too.
"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_FILE = 0o600
PRIVATE_FOLDER = 0o700
# What sits beside a database: SQLite's files and the migrator's lock files.
COMPANION_SUFFIXES = ("", "-wal", "-shm", "-journal", ".migrate-lock", ".users-lock")


def create_private(path: Path) -> None:
    """Create `path` empty with mode 0600 if it does not exist (an empty file is an empty
    SQLite database); an existing file is left as it is."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        return
    os.fchmod(fd, PRIVATE_FILE)  # the umask only narrows, but say it exactly
    os.close(fd)


def make_private_folder(folder: Path) -> None:
    folder.mkdir(mode=PRIVATE_FOLDER, exist_ok=True)


def narrow_modes(db_path: Path, backups: Path) -> list[Path]:
    """Make the database, its companions, the backups folder and every file in it private;
    returns the paths whose mode had to change (anything readable by others)."""
    paths = [db_path.with_name(db_path.name + suffix) for suffix in COMPANION_SUFFIXES]
    if backups.is_dir():
        paths.append(backups)
        paths.extend(p for p in backups.iterdir() if p.is_file())
    return [p for p in paths if narrow(p)]


def narrow(path: Path) -> bool:
    """Drop any permission for group and others from `path`; True when it had any."""
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        return False
    wanted = PRIVATE_FOLDER if path.is_dir() else PRIVATE_FILE
    if mode & ~wanted == 0:
        return False
    path.chmod(mode & wanted)
    return True
