"""`python -m daemon backup snapshot | restore`: a StartOS backup never holds a torn database.

The story under test is the real one: the daemon serves while licenses are issued over HTTP
in a loop; the pre-backup hook takes the snapshot in the middle of that load; StartOS copies
the volume file by file, leaving out the live database, its WAL, shared memory and lock files;
the volume is restored into a fresh folder, `restore` puts the snapshot in place, and the
daemon boots on it. Every license whose creation was answered before the snapshot started
must be there.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

from tests.daemon_proc import REPO, DaemonProc, base_env
from tests.kit import apply_range, assert_db_clean
from tests.test_api_support import admin, issue, make_product

# What the 0.4 package's backup leaves out of the volume copy (the live files).
EXCLUDED = (
    "keysmith.db",
    "keysmith.db-wal",
    "keysmith.db-shm",
    "keysmith.db.migrate-lock",
    "keysmith.db.users-lock",
)
WRITERS = 2
AFTER_SNAPSHOT = 20  # licenses issued after the snapshot ended, to prove the load overlapped it


def backup(step: str, db_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", "backup", step], capture_output=True, text=True,
        env=base_env({"KEYSMITH_DB_PATH": str(db_path)}), cwd=REPO, timeout=120, check=False,
    )  # fmt: skip


def copy_volume_like_startos(source: Path, dest: Path) -> None:
    """rsync with the excludes anchored at the volume root (`/keysmith.db`, ...)."""

    def ignore(folder: str, names: list[str]) -> list[str]:
        return [n for n in names if n in EXCLUDED] if Path(folder) == source else []

    shutil.copytree(source, dest, ignore=ignore)


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


class IssuingLoad:
    """Threads issuing licenses over HTTP; records when each 200 arrived (monotonic clock)."""

    def __init__(self, daemon: DaemonProc, product: str) -> None:
        self.daemon, self.product = daemon, product
        self.issued: list[tuple[float, str]] = []
        self.failures: list[object] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._issue) for _ in range(WRITERS)]

    def _issue(self) -> None:
        while not self.stop.is_set():
            status, body = admin(
                self.daemon, "POST", "/v1/admin/licenses", {"product_slug": self.product}
            )
            if status != 200:
                self.failures.append((status, body))
                return
            with self.lock:
                self.issued.append((time.monotonic(), body["license_id"]))

    def count(self) -> int:
        with self.lock:
            return len(self.issued)

    def wait_for(self, count: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.count() < count and not self.failures:
            assert time.monotonic() < deadline, f"only {self.count()} licenses issued"
            time.sleep(0.01)
        assert not self.failures, self.failures


def test_a_backup_taken_under_write_load_restores_every_committed_license(tmp_path):
    with DaemonProc(tmp_path / "live") as daemon:
        product = make_product(daemon)
        load = IssuingLoad(daemon, product)
        for thread in load.threads:
            thread.start()
        try:
            load.wait_for(30)
            started = time.monotonic()
            snapshot = backup("snapshot", daemon.db_path)
            ended = time.monotonic()
            ended_with = load.count()
            load.wait_for(ended_with + AFTER_SNAPSHOT)
        finally:
            load.stop.set()
            for thread in load.threads:
                thread.join(30)
        assert snapshot.returncode == 0, snapshot.stderr
        assert "integrity ok" in snapshot.stdout
        copy_volume_like_startos(daemon.db_path.parent, tmp_path / "restored")

    committed = {license_id for answered, license_id in load.issued if answered < started}
    during = [answered for answered, _id in load.issued if started <= answered <= ended]
    assert during, "the daemon kept committing licenses while the snapshot was taken"
    assert committed, "the load must have committed licenses before the snapshot"
    restored_db = tmp_path / "restored" / "keysmith.db"
    assert not restored_db.exists(), "the live database itself is never in the backup"
    done = backup("restore", restored_db)
    assert done.returncode == 0, done.stderr
    assert "Restored the database" in done.stdout
    assert (restored_db.stat().st_mode & 0o777) == 0o600

    with DaemonProc(tmp_path / "boot", db_path=restored_db) as restored:
        assert restored.status()["state"] == "serving", restored.log_text()
        code, _out, err = restored.health()
        assert code == 0, err
        with closing(sqlite3.connect(f"file:{restored_db}?mode=ro", uri=True)) as conn:
            assert_db_clean(conn)
            present = {row[0] for row in conn.execute("SELECT id FROM licenses")}
    assert committed <= present, f"{len(committed - present)} committed licenses are missing"
    assert present <= {license_id for _answered, license_id in load.issued}


def test_restore_refuses_a_damaged_snapshot_and_changes_nothing(tmp_path):
    live = tmp_path / "live" / "keysmith.db"
    live.parent.mkdir()
    apply_range(live)
    assert backup("snapshot", live).returncode == 0
    volume = tmp_path / "restored"
    copy_volume_like_startos(live.parent, volume)
    snapshot = volume / "backup-snapshot" / "keysmith.db"
    damaged = bytearray(snapshot.read_bytes())
    damaged[4096:8192] = b"\xff" * 4096  # a table page overwritten
    snapshot.write_bytes(bytes(damaged))
    before = folder_bytes(volume)
    done = backup("restore", volume / "keysmith.db")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "is damaged" in done.stderr and "Nothing was changed" in done.stderr
    assert folder_bytes(volume) == before


def test_restore_refuses_to_replace_a_different_live_database(tmp_path):
    live = tmp_path / "data" / "keysmith.db"
    live.parent.mkdir()
    apply_range(live, upto=8)
    assert backup("snapshot", live).returncode == 0
    apply_range(live)  # the live database moves on after the snapshot
    before = folder_bytes(live.parent)
    done = backup("restore", live)
    assert done.returncode == 1
    assert "already exists" in done.stderr and "Nothing was changed" in done.stderr
    assert folder_bytes(live.parent) == before


def test_a_volume_without_a_database_backs_up_and_restores_as_empty(tmp_path):
    data = tmp_path / "data"
    stale = data / "backup-snapshot" / "keysmith.db"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"an old snapshot that must not come back")
    done = backup("snapshot", data / "keysmith.db")
    assert done.returncode == 0 and "No database" in done.stdout
    assert not stale.exists()
    done = backup("restore", data / "keysmith.db")
    assert done.returncode == 0 and "creates a new database" in done.stdout
    assert not (data / "keysmith.db").exists()


def test_a_snapshot_is_private_and_leaves_no_partial_file(tmp_path):
    live = tmp_path / "data" / "keysmith.db"
    live.parent.mkdir()
    apply_range(live)
    assert backup("snapshot", live).returncode == 0
    folder = live.parent / "backup-snapshot"
    assert [p.name for p in folder.iterdir()] == ["keysmith.db"]
    assert (folder / "keysmith.db").stat().st_mode & 0o777 == 0o600
    assert not (folder / "keysmith.db-wal").exists()


def _license_ids(db: Path, *, immutable: bool = False) -> set[str]:
    """The licenses in `db`; immutable: in the file alone, as if its -wal were gone."""
    uri = f"file:{db}?mode=ro" + ("&immutable=1" if immutable else "")
    with closing(sqlite3.connect(uri, uri=True)) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM licenses")}


def test_restore_keeps_the_wal_of_a_database_moved_aside_after_a_sigkill(tmp_path):
    # Issue 20, item 11: after a SIGKILL, with only keysmith.db moved aside, `backup restore`
    # deleted the keysmith.db-wal left behind, and the moved copy lost acknowledged licenses.
    daemon = DaemonProc(tmp_path).start()
    try:
        product = make_product(daemon)
        assert backup("snapshot", daemon.db_path).returncode == 0
        acknowledged = {issue(daemon, product)["license_id"] for _ in range(50)}
    finally:
        daemon.kill()
    db = daemon.db_path
    wal, shm = (db.with_name(db.name + suffix) for suffix in ("-wal", "-shm"))
    moved = db.with_name("keysmith.db.old")
    db.rename(moved)
    lost_without_wal = acknowledged - _license_ids(moved, immutable=True)
    assert lost_without_wal, "the acknowledged licenses must still be in the WAL for this test"
    wal_bytes = wal.read_bytes()

    done = backup("restore", db)
    assert done.returncode == 1, done.stdout
    assert f"{wal} ({len(wal_bytes)} bytes)" in done.stderr, done.stderr
    assert "Nothing was changed" in done.stderr and "keysmith.db.old-wal" in done.stderr
    assert wal.read_bytes() == wal_bytes and not db.exists()

    # The fix the message names: the log beside the file it belongs to, named after it.
    wal.rename(moved.with_name(moved.name + "-wal"))
    shm.rename(moved.with_name(moved.name + "-shm"))
    assert acknowledged <= _license_ids(moved)
    done = backup("restore", db)
    assert done.returncode == 0, done.stderr
