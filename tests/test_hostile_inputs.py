"""Hostile environments and inputs: each has a clear outcome and loses nothing.

The volume tests mount small tmpfs filesystems, which needs root (CI runs as root); elsewhere
they are skipped with the reason."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests import kit, migfiles

REPO = Path(__file__).resolve().parent.parent


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", "migrate", *map(str, args)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@contextmanager
def small_volume(tmp_path: Path, megabytes: int) -> Iterator[Path]:
    mountpoint = tmp_path / f"volume-{uuid.uuid4().hex[:6]}"
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(mountpoint)],
        capture_output=True, text=True,
    )  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a size-limited filesystem here: {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def remount(mountpoint: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(mountpoint)], check=True)


def populated(folder: Path, db: Path, rows: int = 20000) -> None:
    """The BASIC history at v2, with `rows` accounts (about 1 MB per 10,000), built outside
    `db`'s volume and copied in, so a small volume holds only the finished file."""
    build = Path(f"/tmp/keysmith-populate-{uuid.uuid4().hex}.db")
    try:
        _fill(folder, build, rows)
        shutil.copyfile(build, db)
    finally:
        build.unlink(missing_ok=True)


def _fill(folder: Path, db: Path, rows: int) -> None:
    kit.apply_range(db, folder, upto=2, idempotent=frozenset())
    conn = kit.connect(db)
    conn.execute(
        "INSERT INTO accounts (email) WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 "
        f"FROM n WHERE i < {rows}) SELECT 'user' || i || '@example.com' || hex(zeroblob(40)) FROM n"
    )
    conn.close()
    kit.file_bytes(db)


def logical(db: Path) -> str:
    conn = kit.connect(db)
    try:
        return kit.dump(conn, include_ledger=True)
    finally:
        conn.close()


def test_a_read_only_data_volume_is_reported_and_nothing_is_lost(tmp_path):
    with small_volume(tmp_path, 32) as volume:
        folder = migfiles.write(volume / "m", migfiles.BASIC)
        db = volume / "keysmith.db"
        populated(folder, db, rows=100)
        before = db.read_bytes()
        remount(volume, "ro")
        status = cli("status", "--db", db, "--migrations", folder)
        assert status.returncode == 0, status.stderr  # reading still works on a read-only volume
        assert "3/pending create invoices" in status.stdout
        result = cli("run", "--db", db, "--migrations", folder)
        assert result.returncode == 1
        assert "cannot write to the data volume" in result.stderr
        assert "Read-only file system" in result.stderr and "Traceback" not in result.stderr
        assert db.read_bytes() == before


def test_a_volume_too_full_for_the_backup_is_refused_before_any_sql(tmp_path):
    with small_volume(tmp_path, 12) as volume:
        folder = migfiles.write(volume / "m", migfiles.BASIC)
        db = volume / "keysmith.db"
        populated(folder, db, rows=30000)
        before = logical(db)
        result = cli("run", "--db", db, "--migrations", folder)
        assert result.returncode == 2  # refused before any change, as the CLI documents 2
        assert "Could not take the backup required before migrating" in result.stderr
        assert "MiB free" in result.stderr and "free disk space" in result.stderr
        assert logical(db) == before
        assert not list((volume / "backups").glob("*"))


def test_a_disk_that_fills_up_while_migrating_rolls_back_and_the_next_boot_completes(tmp_path):
    with small_volume(tmp_path, 24) as volume:
        folder = migfiles.write(volume / "m", migfiles.BASIC)
        migfiles.write(
            folder,
            {
                "0004_big_report.sql": (
                    "CREATE TABLE report AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL\n"
                    "SELECT i + 1 FROM n WHERE i < 400000)\n"
                    "SELECT i, hex(zeroblob(60)) AS pad FROM n;"
                )
            },
        )
        db = volume / "keysmith.db"
        populated(folder, db, rows=10000)
        kit.apply_range(db, folder, upto=3, idempotent=frozenset())
        before = logical(db)
        result = cli("run", "--db", db, "--migrations", folder)
        assert result.returncode == 1, result.stdout
        assert "migration 4" in result.stderr and "disk is full" in result.stderr, result.stderr
        assert logical(db) == before, "the failed migration left nothing behind"
        remount(volume, "size=256m")
        assert cli("run", "--db", db, "--migrations", folder).returncode == 0


def test_a_truncated_database_is_never_overwritten(tmp_path):
    folder = migfiles.write(tmp_path / "m", migfiles.BASIC)
    db = tmp_path / "keysmith.db"
    populated(folder, db)
    with open(db, "r+b") as handle:
        handle.truncate(db.stat().st_size // 2)
    damaged = db.read_bytes()
    result = cli("run", "--db", db, "--migrations", folder)
    assert result.returncode == 1
    assert "cannot be read as SQLite" in result.stderr and "malformed" in result.stderr
    assert db.read_bytes() == damaged
    assert not (tmp_path / "backups").exists()


def test_random_bytes_are_never_overwritten(tmp_path):
    folder = migfiles.write(tmp_path / "m", migfiles.BASIC)
    db = tmp_path / "keysmith.db"
    noise = os.urandom(64 * 1024)
    db.write_bytes(noise)
    result = cli("run", "--db", db, "--migrations", folder)
    assert result.returncode == 1 and "not a database" in result.stderr
    assert db.read_bytes() == noise


def test_a_database_from_a_newer_keysmith_is_refused(tmp_path):
    newer = tmp_path / "newer"
    shutil.copytree(kit.MIGRATIONS, newer)
    migfiles.write(newer, {"0099_from_the_future.sql": "CREATE TABLE future (x);"})
    db = tmp_path / "keysmith.db"
    kit.apply_range(db, newer)
    before = logical(db)
    result = cli("run", "--db", db, "--migrations", kit.MIGRATIONS)
    assert result.returncode == 2
    assert "migration 99 (from the future)" in result.stderr
    assert "migrated by a newer release" in result.stderr and "install that newer" in result.stderr
    assert logical(db) == before


def test_a_50_mb_migration_is_applied_and_recorded(tmp_path):
    statement = "INSERT INTO blobs (body) VALUES ('" + "x" * 1000 + "');\n"
    body = "CREATE TABLE blobs (body TEXT);\n" + "-- filler\n" * 1000 + statement * 50_000
    folder = migfiles.write(tmp_path / "m", {"0001_large.sql": body})
    assert (folder / "0001_large.sql").stat().st_size > 50 * 10**6
    db = tmp_path / "keysmith.db"
    result = cli("run", "--db", db, "--migrations", folder)
    assert result.returncode == 0, result.stderr
    conn = kit.connect(db)
    assert conn.execute("SELECT count(*) FROM blobs").fetchone() == (50_000,)


def test_an_empty_file_and_a_name_with_spaces_are_ordinary_migrations(tmp_path):
    folder = migfiles.write(
        tmp_path / "m", {"0001_nothing yet.sql": "", "0002_add table.sql": "CREATE TABLE t (x);"}
    )
    db = tmp_path / "keysmith.db"
    assert cli("run", "--db", db, "--migrations", folder).returncode == 0
    status = cli("status", "--db", db, "--migrations", folder)
    assert status.stdout.splitlines()[:2] == ["1/installed nothing yet", "2/installed add table"]


def test_a_symlink_loop_in_the_folder_is_named_and_changes_nothing(tmp_path):
    folder = migfiles.write(tmp_path / "m", migfiles.BASIC)
    db = tmp_path / "keysmith.db"
    kit.apply_range(db, folder, idempotent=frozenset())
    before = logical(db)
    os.symlink(folder / "0004_loop.sql", folder / "0004_loop.sql")
    result = cli("run", "--db", db, "--migrations", folder)
    assert result.returncode == 1 and "0004_loop.sql" in result.stderr
    assert logical(db) == before
