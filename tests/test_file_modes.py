"""Issue 11, defect 8: the database and its backups hold the issuer private key and the admin
key, so they (and their WAL, SHM, lock files and the status file) are created 0600, and a boot
narrows files an older version left readable by others.

The test process keeps the usual umask (022), so a file that comes out 0600 was made private
by the code, not by the environment.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests import kit, migfiles
from tests.daemon_proc import REPO, DaemonProc, base_env

COMPANIONS = ("", "-wal", "-shm", ".migrate-lock", ".users-lock")


@pytest.fixture(autouse=True)
def usual_umask():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def modes(paths: list[Path]) -> dict[str, str]:
    return {p.name: oct(mode(p)) for p in paths}


def database_files(db: Path) -> list[Path]:
    return [db.with_name(db.name + suffix) for suffix in COMPANIONS]


def backup_files(db: Path) -> list[Path]:
    folder = db.parent / "backups"
    return [folder, *sorted(folder.iterdir())]


def test_a_first_boot_creates_every_file_owner_only(tmp_path):
    with DaemonProc(tmp_path) as d:
        d.wait_for("serving")
        files = [p for p in [*database_files(d.db_path), d.status_path] if p.exists()]
        assert len(files) >= 5, files  # the database, its WAL and SHM, a lock, the status
        assert set(modes(files).values()) == {"0o600"}, modes(files)


def test_a_backup_and_a_cli_run_create_owner_only_files(tmp_path):
    folder = migfiles.write(tmp_path / "m", migfiles.BASIC)
    db = tmp_path / "data" / "app.db"
    kit.apply_range(db, folder, upto=2, idempotent=frozenset())  # the library, in this process
    assert mode(db) == 0o600
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "daemon",
            "migrate",
            "run",
            "--db",
            str(db),
            "--migrations",
            str(folder),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    files = [p for p in database_files(db) if p.exists()]
    assert set(modes(files).values()) == {"0o600"}, modes(files)
    backups = backup_files(db)
    assert len(backups) == 2, "the run backed up before applying 3"
    assert modes(backups) == {backups[0].name: "0o700", backups[1].name: "0o600"}


def test_a_boot_narrows_files_an_older_version_left_readable(tmp_path):
    db = tmp_path / "data" / "keysmith.db"
    kit.apply_range(db, upto=10)
    kit.apply_range(db)  # at v10 with data: this run backs up before 11
    status = db.parent / "keysmith-status.json"
    status.write_text('{"state": "stopped", "clean_stop": true, "reached_serving": true}')
    wide = [db, *backup_files(db), status]
    for path in wide:
        path.chmod(0o755 if path.is_dir() else 0o644)

    with DaemonProc(tmp_path) as d:
        d.wait_for("serving")
        fixed = [p for p in wide if mode(p) & 0o077]
        assert not fixed, modes(fixed)
        assert mode(db.parent / "backups") == 0o700
        warnings = [
            line
            for line in d.log_text().splitlines()
            if " WARN keysmith.boot " in line and "readable by the owner only" in line
        ]
        assert len(warnings) == 1 and str(db) in warnings[0], d.log_text()


def test_the_database_a_restore_replaces_is_kept_owner_only(tmp_path):
    # Issue 20, item 12: 'Restore pre-upgrade backup' kept the database it replaced as
    # backups/…-replaced-by-restore.sqlite3 with mode 0644 (the umask's), holding the keys.
    db = tmp_path / "data" / "keysmith.db"
    kit.apply_range(db, upto=10)
    kit.apply_range(db)  # at v10: this run backs up before 11, so there is a backup to restore
    env = base_env({"KEYSMITH_DB_PATH": str(db)})
    done = subprocess.run(
        [sys.executable, "-m", "daemon", "action", "restore-backup"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [kept] = (db.parent / "backups").glob("*-replaced-by-restore.sqlite3")
    assert mode(kept) == 0o600, oct(mode(kept))
    assert set(modes(backup_files(db)[1:]).values()) == {"0o600"}, modes(backup_files(db))
