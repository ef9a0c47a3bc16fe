"""Issue 23, parts 2 to 7: every refusal a typed result (kind code, versions, remedy codes with
parameters, the host's words), a locked database its own kind, provenance trusted only at the
ledger's checksum, a revert plan that checks each step against the ledger's real state, and
arguments validated before anything changes. All through the real CLI (and the real daemon, and
the real sqlx-cli) on real SQLite files."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.migrate.sqltext import normalized_sha384
from tests import kit, migfiles
from tests.daemon_proc import REPO, DaemonProc
from tests.test_migrate_cli import cli

LATEST = kit.latest_version()
SQLX = Path(sys.executable).parent / "sqlx"


def dump(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return kit.dump(conn, include_ledger=True)
    finally:
        conn.close()


def backups(db: Path) -> list[str]:
    folder = db.parent / "backups"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


# ---- 2. a locked database ------------------------------------------------------------------


class Holder:
    """Another process's write transaction: BEGIN EXCLUSIVE held on the database."""

    def __init__(self, db: Path) -> None:
        self.conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
        self.conn.execute("BEGIN EXCLUSIVE")

    def release(self) -> None:
        self.conn.execute("ROLLBACK")
        self.conn.close()


# Two reversible migrations on top of BASIC: 4 applied (so a revert has a step), 5 pending.
PAIRS = {
    "0004_notes.up.sql": "CREATE TABLE notes (x);\n",
    "0004_notes.down.sql": "-- discards: notes\nDROP TABLE notes;\n",
    "0005_tags.up.sql": "CREATE TABLE tags (x);\n",
    "0005_tags.down.sql": "-- discards: tags\nDROP TABLE tags;\n",
}


@pytest.fixture
def pending_under_lock(tmp_path):
    folder = migfiles.write(tmp_path / "m", {**migfiles.BASIC, **PAIRS})
    db = tmp_path / "app.db"
    kit.apply_range(db, folder, upto=4, idempotent=frozenset())
    before, names = dump(db), backups(db)
    holder = Holder(db)
    yield folder, db, before, names
    holder.release()


@pytest.mark.parametrize("step", ["run", "revert"])
def test_a_locked_database_is_its_own_refusal_never_a_traceback(pending_under_lock, step):
    folder, db, before, names = pending_under_lock
    done = cli(step, "--db", str(db), "--migrations", str(folder), "--json")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    answer = json.loads(done.stdout)
    assert answer["kind"] == "database_locked" and answer["refusal"] is True
    assert answer["remedies"][0]["code"] == "retry_or_stop_holder"
    assert answer["data_intact"] is True
    assert "another process holds the database" in done.stderr.lower()
    assert "nothing was changed" in done.stderr.lower() and f"`fuser {db}`" in done.stderr
    assert backups(db) == names, "no backup left behind"
    assert dump(db) == before


def test_serve_on_a_locked_database_is_safe_mode_with_that_cause(tmp_path):
    db = tmp_path / "data" / "keysmith.db"
    db.parent.mkdir()
    kit.apply_range(db, upto=LATEST - 1)
    holder = Holder(db)
    try:
        with DaemonProc(tmp_path, db_path=db) as daemon:
            status = daemon.status()
    finally:
        holder.release()
    assert status["state"] == "failed", status
    assert status["cause"]["kind"] == "database_locked", status["cause"]
    assert status["cause"]["data_intact"] is True
    assert "another process holds the database" in status["cause"]["message"].lower()
    assert max(kit.checksums(db)) == LATEST - 1 and not (db.parent / "backups").exists()


# ---- 3. provenance, trusted only at the ledger's checksum ------------------------------------

EDITED = migfiles.BASIC["0003_create_invoices.sql"].replace("'thanks;  see you'", "'thank you'")


def sqlx(db: Path, folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SQLX), "migrate", *args, "--source", str(folder), "--database-url", f"sqlite://{db}"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def lock_listing(folder: Path, version: int, text: str) -> None:
    """A history lock that lists `text` as a released text of `version`."""
    data = text.encode()
    import hashlib

    doc = {
        "format": 1,
        "rule": "test",
        "migrations": {
            str(version): [
                {
                    "sha384": hashlib.sha384(data).hexdigest(),
                    "tokens_sha384": normalized_sha384(text).hex(),
                    "release": "0123456789ab 2026-12-01",
                    "text": text,
                }
            ]
        },
    }
    (folder / "history.lock").write_text(json.dumps(doc))


@pytest.fixture
def stale(tmp_path):
    """Keysmith ran 1-3; the real sqlx-cli reverted 3, the file was edited, sqlx ran it again:
    the provenance row of 3 still holds the text that is no longer applied."""
    folder = migfiles.write(tmp_path / "m", {**migfiles.BASIC})
    reversible = folder / "0003_create_invoices.up.sql"
    (folder / "0003_create_invoices.sql").rename(reversible)
    (folder / "0003_create_invoices.down.sql").write_text("DROP TABLE invoices;\n")
    db = tmp_path / "app.db"
    kit.apply_range(db, folder, idempotent=frozenset())
    done = sqlx(db, folder, "revert")
    assert done.returncode == 0, done.stderr
    reversible.write_text(EDITED)
    done = sqlx(db, folder, "run")
    assert done.returncode == 0, done.stderr
    return folder, db


def provenance_text(db: Path, version: int) -> bytes | None:
    conn = sqlite3.connect(db)
    try:
        row = conn.execute(
            "SELECT applied_sql FROM _keysmith_provenance WHERE version = ?", (version,)
        ).fetchone()
    finally:
        conn.close()
    return None if row is None else bytes(row[0])


def test_stale_provenance_is_replaced_by_the_applied_text_at_the_next_run(stale):
    folder, db = stale
    done = cli("run", "--db", str(db), "--migrations", str(folder), "--idempotent", "")
    assert done.returncode == 0, done.stderr
    assert provenance_text(db, 3) == EDITED.encode()


def test_status_consults_the_history_lock_when_provenance_is_stale(stale):
    folder, db = stale
    lock_listing(folder, 3, EDITED)
    (folder / "0003_create_invoices.up.sql").write_text("-- a comment\n" + EDITED)
    done = cli("status", "--db", str(db), "--migrations", str(folder), "--idempotent", "")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "compared with: history lock" in done.stdout
    assert "-> restamp" in done.stdout and "thanks;  see you" not in done.stdout


# ---- 4. the revert plan checks each step against the ledger's real state -------------------


@pytest.fixture
def accepted_old_12(tmp_path):
    """A ledger applied from 0012's first released text, accepted as today's 0012 (its text
    never ran), then run to the newest schema."""
    lock = json.loads((kit.MIGRATIONS / "history.lock").read_text())
    old_text = next(t["text"] for t in lock["migrations"]["12"] if t["release"] != "current")
    old = tmp_path / "old"
    old.mkdir()
    for path in kit.MIGRATIONS.glob("*.sql"):
        if int(path.name[:4]) <= 11:
            shutil.copy2(path, old / path.name)
    (old / "0012_machine_state_index.up.sql").write_text(old_text)
    db = tmp_path / "app.db"
    kit.apply_range(db, old)
    done = cli("accept", "12", "--db", str(db), "--by", "test")
    assert done.returncode == 0, done.stderr
    kit.apply_range(db)
    return db


def test_a_revert_over_an_accepted_version_is_refused_before_the_backup(accepted_old_12):
    db = accepted_old_12
    before, names = dump(db), backups(db)
    done = cli("revert", "--to", "11", "--db", str(db), "--json")
    assert done.returncode == 2, done.stdout + done.stderr
    answer = json.loads(done.stdout)
    assert answer["kind"] == "blocked"
    assert [(b["version"], b["kind"]) for b in answer["blocked"]] == [(12, "accepted_text")]
    assert "accepted by the operator" in answer["blocked"][0]["finding"]
    assert dump(db) == before and backups(db) == names, "refused before the backup"


def test_accept_undo_puts_back_the_checksum_and_provenance_it_replaced(tmp_path):
    folder = migfiles.write(tmp_path / "m", migfiles.BASIC)
    db = tmp_path / "app.db"
    kit.apply_range(db, folder, idempotent=frozenset())
    ledger_before, text_before = kit.checksums(db), provenance_text(db, 2)
    migfiles.write(folder, {"0002_accounts_add_plan.sql": "ALTER TABLE accounts ADD x TEXT;\n"})
    paths = ("--db", str(db), "--migrations", str(folder), "--idempotent", "")
    assert cli("accept", "2", *paths).returncode == 0
    assert kit.checksums(db) != ledger_before
    done = cli("accept", "2", "--undo", *paths)
    assert done.returncode == 0, done.stderr
    assert kit.checksums(db) == ledger_before and provenance_text(db, 2) == text_before
    again = cli("accept", "2", "--undo", *paths)
    assert again.returncode == 2 and "no acceptance of it to undo" in again.stderr
    assert cli("status", *paths).returncode == 2, "blocked again, as before the acceptance"


# ---- 5. blockers carry kind and remedy codes ----------------------------------------------


@pytest.fixture
def modified(tmp_path):
    folder = migfiles.write(tmp_path / "m", migfiles.BASIC)
    db = tmp_path / "app.db"
    kit.apply_range(db, folder, upto=2, idempotent=frozenset())
    migfiles.write(folder, {"0002_accounts_add_plan.sql": "ALTER TABLE accounts ADD x TEXT;\n"})
    return folder, db


@pytest.mark.parametrize("step", ["status", "run", "plan"])
def test_blockers_carry_kind_and_remedy_codes_with_the_real_version(modified, step):
    folder, db = modified
    before = dump(db)
    done = cli(step, "--db", str(db), "--migrations", str(folder), "--idempotent", "", "--json")
    assert done.returncode == 2, done.stderr
    answer = json.loads(done.stdout)
    (blocker,) = answer["blocked"]
    assert blocker["version"] == 2 and blocker["kind"] == "modified"
    codes = [r["code"] for r in blocker["remedies"]]
    assert codes == ["install_previous_version", "accept_change"]
    assert all(r["params"] == {"version": "2"} for r in blocker["remedies"])
    assert "migrate accept 2" in blocker["remedy"] and "VERSION" not in blocker["remedy"]
    if step == "plan":
        assert answer["steps"] == [] and answer["backup"] is False
    assert dump(db) == before


# ---- 6/7. arguments ----------------------------------------------------------------------


@pytest.fixture
def newest(tmp_path):
    db = tmp_path / "app.db"
    kit.apply_range(db)
    return db


@pytest.mark.parametrize("target", ["-3", "99", str(LATEST + 1)])
def test_revert_to_a_version_not_applied_is_refused(newest, target):
    before = dump(newest)
    done = cli("revert", "--to", target, "--db", str(newest), "--json")
    assert done.returncode == 2, done.stdout + done.stderr
    answer = json.loads(done.stdout)
    assert answer["kind"] == "bad_target" and answer["versions"] == [int(target)]
    assert "not an applied version" in done.stderr
    assert dump(newest) == before and backups(newest) == []


def test_plan_to_and_revert_dry_run_show_steps_and_discards_without_acting(newest):
    before = dump(newest)
    for args in (("plan", "--to", "13"), ("revert", "--to", "13", "--dry-run")):
        done = cli(*args, "--db", str(newest))
        assert done.returncode == 0, done.stderr
        assert f"{LATEST} (" in done.stdout and "discards" in done.stdout, done.stdout
        assert dump(newest) == before and backups(newest) == []
    answer = json.loads(
        cli("revert", "--to", "13", "--dry-run", "--db", str(newest), "--json").stdout
    )
    assert [s["version"] for s in answer["steps"]] == list(range(LATEST, 13, -1))
    assert answer["reverted"] == [] and set(answer["discards"]) == {
        str(v) for v in range(14, LATEST + 1)
    }


def test_plan_to_a_version_runs_only_up_to_it(tmp_path):
    folder = migfiles.write(tmp_path / "m", migfiles.BASIC)
    db = tmp_path / "app.db"
    done = cli("plan", "--to", "2", "--db", str(db), "--migrations", str(folder), "--json")
    assert done.returncode == 0, done.stderr
    assert [s["version"] for s in json.loads(done.stdout)["steps"]] == [1, 2]
    bad = cli("status", "--to", "7", "--db", str(db), "--migrations", str(folder))
    assert bad.returncode == 2 and "target version 7" in bad.stderr


def test_a_full_revert_says_no_schema_not_vnone(tmp_path):
    folder = migfiles.write(
        tmp_path / "m",
        {"0001_t.up.sql": "CREATE TABLE t (x);\n", "0001_t.down.sql": "DROP TABLE t;\n"},
    )
    db = tmp_path / "app.db"
    kit.apply_range(db, folder)
    done = cli("revert", "--to", "0", "--db", str(db), "--migrations", str(folder))
    assert done.returncode == 0, done.stderr
    assert "vNone" not in done.stdout + done.stderr and "no schema" in done.stdout


def test_database_in_use_and_lock_timeout_exit_2(tmp_path):
    from daemon.migrate.lock import UsersLock, lock_path_for

    folder = migfiles.write(tmp_path / "m", migfiles.BASIC)
    folder.joinpath("0004_nt.sql").write_text("-- no-transaction\nCREATE TABLE nt (x);\n")
    db = tmp_path / "app.db"
    kit.apply_range(db, folder, upto=3, idempotent=frozenset())
    users = UsersLock(db)
    users.take_shared(timeout=1)
    try:
        done = cli("run", "--db", str(db), "--migrations", str(folder), "--json")
    finally:
        users.release()
    assert done.returncode == 2 and json.loads(done.stdout)["kind"] == "database_in_use"

    import fcntl
    import os

    fd = os.open(lock_path_for(db), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        done = cli("run", "--db", str(db), "--migrations", str(folder), "--json", "--wait", "1")
    finally:
        os.close(fd)
    assert done.returncode == 2 and json.loads(done.stdout)["kind"] == "lock_timeout"


def test_a_relative_db_path_is_logged_absolute(tmp_path):
    folder = migfiles.write(tmp_path / "m", {"0001_t.sql": "CREATE TABLE IF NOT EXISTS t (x);\n"})
    db = tmp_path / "app.db"
    kit.apply_range(db, folder, idempotent=frozenset())
    conn = sqlite3.connect(db)
    try:  # a stale checksum on a version certified idempotent: re-run, after a backup
        conn.execute("UPDATE _sqlx_migrations SET checksum = zeroblob(48) WHERE version = 1")
        conn.commit()
    finally:
        conn.close()
    done = subprocess.run(
        [sys.executable, "-m", "daemon", "migrate", "run", "--db", "app.db",
         "--migrations", str(folder), "--idempotent", "1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
        env={"PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    conn = sqlite3.connect(db)
    try:
        (backup,) = conn.execute(
            "SELECT backup_file FROM _keysmith_heal_log WHERE action = 'rerun'"
        ).fetchone()
    finally:
        conn.close()
    assert Path(backup).is_absolute() and Path(backup).is_file(), backup


def test_a_boot_refusal_is_typed_in_the_status_file(tmp_path):
    folder = migfiles.write(tmp_path / "m", migfiles.BASIC)
    db = tmp_path / "data" / "keysmith.db"
    db.parent.mkdir()
    kit.apply_range(db, folder, idempotent=frozenset())
    (folder / "0003_create_invoices.sql").unlink()  # an older release's folder
    before = dump(db)
    with DaemonProc(tmp_path, db_path=db, migrations_dir=folder) as daemon:
        cause = daemon.status()["cause"]
    assert cause["kind"] == "blocked" and cause["data_intact"] is True
    (blocker,) = cause["blockers"]
    assert blocker["version"] == 3 and blocker["kind"] == "missing_from_folder"
    assert [r["code"] for r in blocker["remedies"]] == ["install_newer_version", "restore_backup"]
    assert "this release cannot revert it itself" in blocker["finding"]
    assert "Restore pre-upgrade backup" in blocker["remedy"]
    assert dump(db) == before
