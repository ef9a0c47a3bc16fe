"""Issue 11, defect 1: a step that may need the backup restored never runs while another
process has the database open.

The scenario from the issue: the daemon serves under write load over HTTP while
`python -m daemon migrate run` applies a copy of the migrations folder with a failing
`-- no-transaction` migration. Restoring the backup under the daemon swapped the file away
from its open connections: the daemon kept answering 201 into an unlinked file and hundreds
of acknowledged licenses were gone. Now the migrator refuses before changing anything.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests import kit, migfiles
from tests.daemon_proc import REPO, DaemonProc
from tests.test_api_support import admin, make_product

FAILING_NO_TRANSACTION = (
    "-- no-transaction\n"
    "CREATE TABLE bulk_copy AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
    "WHERE i < 400000) SELECT i, printf('%032x', i * 2654435761) AS v FROM n;\n"
    "INSERT INTO no_such_table VALUES (1);\n"
)


class Writers:
    """Threads issuing licenses over HTTP; keeps the id of every license answered 200 (created)."""

    def __init__(self, daemon: DaemonProc, product: str, threads: int = 2) -> None:
        self.daemon, self.product = daemon, product
        self.acknowledged: list[int] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._write) for _ in range(threads)]

    def _write(self) -> None:
        while not self.stop.is_set():
            status, body = admin(
                self.daemon, "POST", "/v1/admin/licenses", {"product_slug": self.product}
            )
            if status == 200:
                self.acknowledged.append(body["license_id"])

    def __enter__(self) -> Writers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)


def migrate_run(db: Path, migrations: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "daemon", "migrate", "run", "--db", str(db),
               "--migrations", str(migrations)]  # fmt: skip
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)


def license_ids(db: Path) -> set[int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {row[0] for row in conn.execute("SELECT id FROM licenses")}
    finally:
        conn.close()


def test_migrate_run_refuses_a_no_transaction_step_while_the_daemon_serves(tmp_path):
    migrations = tmp_path / "migrations"
    shutil.copytree(kit.MIGRATIONS, migrations)
    next_version = kit.latest_version(migrations) + 1
    migfiles.write(migrations, {f"{next_version:04d}_bulk_copy.sql": FAILING_NO_TRANSACTION})

    with DaemonProc(tmp_path) as daemon:
        product = make_product(daemon)
        with Writers(daemon, product) as writers:
            time.sleep(0.5)
            result = migrate_run(daemon.db_path, migrations)
            written_during_run = len(writers.acknowledged)
            time.sleep(0.5)  # the daemon keeps writing after the migrator is done
        status, health = daemon.request("GET", "/healthz")
        assert status == 200 and health["state"] == "serving"
    acknowledged = set(writers.acknowledged)
    assert written_during_run > 0 and len(acknowledged) > written_during_run

    lost = acknowledged - license_ids(daemon.db_path)
    assert not lost, f"{len(lost)} of {len(acknowledged)} acknowledged licenses were lost"
    assert result.returncode == 2, result.stderr
    assert "another process has the database open" in result.stderr, result.stderr
    assert "Nothing was changed" in result.stderr
    assert next_version not in kit.checksums(daemon.db_path)
    assert not (daemon.db_path.parent / "backups").exists(), "refused before the backup"


def test_a_transactional_migration_still_runs_beside_the_serving_daemon(tmp_path):
    migrations = tmp_path / "migrations"
    shutil.copytree(kit.MIGRATIONS, migrations)
    next_version = kit.latest_version(migrations) + 1
    migfiles.write(migrations, {f"{next_version:04d}_notes.sql": "CREATE TABLE notes (x);\n"})
    with DaemonProc(tmp_path) as daemon:
        product = make_product(daemon)
        with Writers(daemon, product, threads=1) as writers:
            result = migrate_run(daemon.db_path, migrations)
        assert result.returncode == 0, result.stderr
    assert next_version in kit.checksums(daemon.db_path)
    assert set(writers.acknowledged) <= license_ids(daemon.db_path)


def test_the_daemon_waits_for_a_no_transaction_step_then_serves(tmp_path):
    # The other order: the migrator holds the database exclusively; a daemon starting then must
    # not open its pool under it, only once it is done.
    from daemon.migrate.lock import UsersLock

    db = tmp_path / "data" / "keysmith.db"
    kit.apply_range(db)
    users = UsersLock(db)
    users.take_exclusive("hold the database for this test")
    daemon = DaemonProc(tmp_path, wait=None)
    try:
        daemon.start()
        time.sleep(1.5)
        assert daemon.status()["state"] == "migrating", daemon.status()
        users.release()
        assert daemon.wait_for("serving")["state"] == "serving"
    finally:
        users.release()
        daemon.close()


def test_readers_closing_beside_a_run_never_lose_its_commits(tmp_path):
    # Found while aiming kills at phases: the backup's fast copy opened and closed the database
    # file, which drops every POSIX lock the migrator's process holds on it. A reader in another
    # process that then closed its last connection took the migrator's for gone, merged and
    # deleted the WAL under it: later migrations, committed, were lost, and readers meanwhile
    # were told "database disk image is malformed".
    migrations = tmp_path / "migrations"
    shutil.copytree(kit.MIGRATIONS, migrations)
    first = kit.latest_version(migrations) + 1
    versions = list(range(first, first + 8))
    migfiles.write(
        migrations,
        {
            f"{v:04d}_work_{v}.sql": f"CREATE TABLE work_{v} AS WITH RECURSIVE n(i) AS "
            "(SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) SELECT i FROM n;\n"
            for v in versions
        },
    )
    template = tmp_path / "template.db"
    kit.apply_range(template, upto=first - 1)
    kit.file_bytes(template)
    for attempt in range(4):
        db = tmp_path / f"run{attempt}" / "app.db"
        db.parent.mkdir()
        shutil.copy(template, db)
        errors: list[str] = []
        stop = threading.Event()

        def read_repeatedly(
            db: Path = db, errors: list[str] = errors, stop: threading.Event = stop
        ) -> None:
            while not stop.is_set():
                try:
                    kit.checksums(db)  # a connection opened, read and closed
                except sqlite3.DatabaseError as error:
                    errors.append(str(error))

        reader = threading.Thread(target=read_repeatedly)
        reader.start()
        try:
            result = migrate_run(db, migrations)
        finally:
            stop.set()
            reader.join()
        assert result.returncode == 0, result.stderr
        assert not errors, f"run {attempt}: readers saw {errors[:3]}"
        assert set(versions) <= set(kit.checksums(db)), f"run {attempt}: commits lost"


def test_the_restore_action_refuses_while_the_daemon_serves(tmp_path):
    # The same loss by another road: the restore action replaced the file under a serving
    # daemon whenever no migration was running.
    db = tmp_path / "data" / "keysmith.db"
    kit.apply_range(db, upto=kit.latest_version() - 1)
    kit.apply_range(db)  # leaves a pre-upgrade backup to restore
    with DaemonProc(tmp_path) as daemon:
        product = make_product(daemon)
        before = license_ids(db)
        issued = admin(daemon, "POST", "/v1/admin/licenses", {"product_slug": product})[1]
        result = subprocess.run(
            [sys.executable, "-m", "daemon", "action", "restore-backup"],
            env=daemon.env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 1, result.stdout
        assert "Nothing was changed" in result.stderr and "Stop the service" in result.stderr
        assert license_ids(db) == before | {issued["license_id"]}
