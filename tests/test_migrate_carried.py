"""Down texts travel with the data (issue 23, part 1): a database this release migrated to its
newest schema keeps each reversible migration's down text, so an older release of this package
(a checkout whose migrations stop at OLDER) reverts the newer versions itself at boot, backup
first, and serves; anything it cannot trust stays a refusal that changes nothing."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from daemon import __version__
from daemon.health import verdict
from daemon.migrate import Blocked, run_migrations
from tests import kit
from tests.daemon_proc import REPO, DaemonProc
from tests.seed import seed
from tests.test_api_support import issue, make_product, must

LATEST = kit.latest_version()
# The older release: the first whose migrations all ship as reversible pairs above it.
OLDER = 13
NEWER = [v for v in range(OLDER + 1, LATEST + 1)]
SQLX = Path(sys.executable).parent / "sqlx"
DOWN_TEXTS_TABLE = "_keysmith_down_texts"  # where the down texts travel (daemon/migrate/ledger.py)


def older_checkout(tmp_path: Path) -> Path:
    """An older release of this package: the tree as it was just before migration OLDER + 1
    was added (its code, its migrations up to OLDER and their history lock), with this
    release's migrator package, as the first release to carry it would have it. The code of
    that time runs on schema OLDER; today's code does not."""
    added = git(
        "log", "--diff-filter=A", "--format=%H", "--", f":(glob)migrations/{OLDER + 1:04d}_*"
    )
    release = f"{added.split()[-1]}^"
    tree = tmp_path / "older"
    tree.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", release, "daemon", "migrations"],
        capture_output=True, check=True,
    )  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    shutil.rmtree(tree / "daemon" / "migrate")
    shutil.copytree(
        REPO / "daemon" / "migrate",
        tree / "daemon" / "migrate",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    db_module = tree / "daemon" / "db.py"
    text = db_module.read_text()
    assert text.count("lock_timeout=lock_timeout,\n    )") == 1, "the boot's migrator call moved"
    db_module.write_text(
        text.replace(
            "lock_timeout=lock_timeout,\n    )",
            "lock_timeout=lock_timeout,\n        revert_newer=True,\n    )",
        )
    )
    assert max(int(p.name[:4]) for p in (tree / "migrations").glob("0*.sql")) == OLDER
    return tree


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True
    ).stdout


def older_env(tree: Path) -> dict[str, str]:
    return {"PYTHONPATH": str(tree), "KEYSMITH_MIGRATIONS_DIR": str(tree / "migrations")}


def ledger_versions(db: Path) -> list[int]:
    return sorted(kit.checksums(db))


def sqlx(db: Path, folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SQLX), "migrate", *args, "--source", str(folder), "--database-url", f"sqlite://{db}"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_an_older_release_boots_on_the_newest_schema_reverts_itself_and_serves(tmp_path):
    assert LATEST > OLDER, "the newest schema must be newer than the older release's"
    db = tmp_path / "data" / "keysmith.db"
    with DaemonProc(tmp_path, db_path=db) as newer:
        assert newer.status()["state"] == "serving", newer.log_text()
        product = make_product(newer)
        licenses = [issue(newer, product) for _ in range(5)]
        before = [
            must(newer.request("POST", "/v1/validate", {"key": lic["license_key"]}), 200)
            for lic in licenses
        ]
    assert ledger_versions(db)[-1] == LATEST

    tree = older_checkout(tmp_path)
    with DaemonProc(tmp_path, db_path=db, env=older_env(tree)) as older:
        status = older.status()
        assert status["state"] == "serving", older.log_text()
        assert status["schema_version"] == OLDER
        after = [
            must(older.request("POST", "/v1/validate", {"key": lic["license_key"]}), 200)
            for lic in licenses
        ]
        code, _out, _err = older.health()
        log = older.log_text()
    assert after == before and all(a["ok"] for a in after)
    assert ledger_versions(db)[-1] == OLDER
    # The backup taken before the revert is there, at the newest schema, and named everywhere.
    reverts = [h for h in status["heals"] if h["action"] == "revert"]
    assert sorted(h["version"] for h in reverts) == NEWER
    backup = Path(reverts[0]["backup_path"])
    assert backup.is_file() and f"-pre-revert-v{LATEST}." in backup.name
    assert max(kit.checksums(backup)) == LATEST
    assert code == 0, _err
    # This release's health check words the record: what each step discarded, and the backup.
    ready, out, _ = verdict(status)
    assert ready == 0 and "reverted at this boot" in out and str(backup) in out, out
    assert all(f"{v} reverted with" in out for v in NEWER) and "discards" in out, out
    warned = [line for line in log.splitlines() if "reverted migration" in line]
    assert len(warned) == len(NEWER) and all("WARN" in line for line in warned), log
    conn = sqlite3.connect(db)
    try:
        logged = conn.execute(
            "SELECT version, backup_file FROM _keysmith_heal_log WHERE action = 'revert'"
        ).fetchall()
    finally:
        conn.close()
    assert sorted(v for v, _b in logged) == NEWER and {b for _v, b in logged} == {str(backup)}

    # The real sqlx-cli still runs on the result, reverts and re-applies.
    folder = tree / "migrations"
    done = sqlx(db, folder, "run")
    assert done.returncode == 0, done.stderr
    done = sqlx(db, folder, "revert")
    assert done.returncode == 0 and ledger_versions(db)[-1] == OLDER - 1, done.stderr
    done = sqlx(db, folder, "run")
    assert done.returncode == 0 and ledger_versions(db)[-1] == OLDER, done.stderr
    info = sqlx(db, folder, "info")
    assert info.returncode == 0 and "different checksum" not in info.stdout, info.stdout


@pytest.fixture
def newest(tmp_path):
    """A seeded database this release migrated to its newest schema, the older folder, and the
    database's dump at schema OLDER (before the newer versions were applied)."""
    db = tmp_path / "app.db"
    kit.apply_range(db, upto=OLDER)
    conn = kit.connect(db)
    try:
        seed(conn, OLDER)
        at_older = kit.dump(conn)
    finally:
        conn.close()
    kit.apply_range(db)
    return db, older_checkout(tmp_path) / "migrations", at_older


def boot_run(db: Path, folder: Path):
    return run_migrations(
        db, folder, idempotent=frozenset(), daemon_version=__version__, revert_newer=True
    )


def refused_at_boot(db: Path, folder: Path) -> Blocked:
    before = kit.file_bytes(db)
    with pytest.raises(Blocked) as error:
        boot_run(db, folder)
    assert kit.file_bytes(db) == before, "nothing changed"
    assert not (db.parent / "backups").exists() or not list(
        (db.parent / "backups").glob("*pre-revert*")
    ), "no backup before a refusal"
    return error.value


def test_the_boot_revert_returns_the_older_schema_exactly(newest):
    db, folder, at_older = newest
    outcome = boot_run(db, folder)
    assert outcome.schema_version == OLDER
    assert sorted(h.version for h in outcome.heals) == NEWER
    assert outcome.backup is not None and outcome.backup.path.is_file()
    conn = kit.connect(db)
    try:
        kit.assert_db_clean(conn)
        assert kit.dump(conn) == at_older
    finally:
        conn.close()


def forget_downs(db: Path, where: str = "1") -> None:
    conn = sqlite3.connect(db)
    try:
        conn.execute(f"DELETE FROM {DOWN_TEXTS_TABLE} WHERE {where}")
        conn.commit()
    finally:
        conn.close()


def test_without_a_kept_down_text_the_older_release_still_refuses(newest):
    db, folder, _ = newest
    forget_downs(db, f"version = {LATEST}")
    error = refused_at_boot(db, folder)
    assert [b.version for b in error.blockers] == NEWER
    newest_blocker = next(b for b in error.blockers if b.version == LATEST)
    assert newest_blocker.kind == "missing_from_folder"
    assert "this release cannot revert it itself" in newest_blocker.finding


def tamper(db: Path, assignment: str) -> None:
    """Change the newest version's kept down text behind the migrator's back."""
    conn = sqlite3.connect(db)
    try:
        conn.execute(f"UPDATE {DOWN_TEXTS_TABLE} SET {assignment} WHERE version = ?", (LATEST,))
        conn.commit()
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("assignment", "kind"),
    [
        # Kept by another lineage: of unknown origin, never run.
        ("lineage = x'00'", "down_of_unknown_origin"),
        # Its origin holds (the up checksum and lineage it was kept with), so it is tried on the
        # database in a transaction that is rolled back, fails, and is refused before the backup.
        ("down_sql = CAST('DROP TABLE no_such_table;' AS BLOB)", "down_would_fail"),
    ],
)
def test_a_kept_down_text_it_cannot_trust_or_run_is_refused(newest, assignment, kind):
    db, folder, _ = newest
    tamper(db, assignment)
    error = refused_at_boot(db, folder)
    kinds = {b.version: b.kind for b in error.blockers}
    assert kinds[LATEST] == kind, kinds


def test_migrate_revert_uses_the_kept_text_when_the_file_is_gone(newest):
    db, folder, _ = newest
    done = subprocess.run(
        [sys.executable, "-m", "daemon", "migrate", "revert", "--to", str(OLDER),
         "--db", str(db), "--migrations", str(folder), "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["reverted"] == sorted(NEWER, reverse=True)
    assert answer["schema_version"] == OLDER
    assert set(answer["discarded"]) == {str(v) for v in NEWER}


def test_every_applied_pair_keeps_its_down_text_with_its_discards_header(newest):
    db, _folder, _ = newest
    conn = sqlite3.connect(db)
    try:
        kept = dict(conn.execute(f"SELECT version, down_sql FROM {DOWN_TEXTS_TABLE}"))
    finally:
        conn.close()
    pairs = sorted(int(p.name[:4]) for p in kit.MIGRATIONS.glob("*.down.sql"))
    assert sorted(kept) == pairs
    for version in pairs:
        (down,) = kit.MIGRATIONS.glob(f"{version:04d}_*.down.sql")
        assert bytes(kept[version]) == down.read_bytes()
        assert b"-- discards:" in bytes(kept[version])


def test_a_database_migrated_before_down_texts_were_kept_gets_them_at_the_next_run(newest):
    db, _folder, _ = newest
    forget_downs(db)
    outcome = kit.apply_range(db)
    assert outcome.applied == [] and outcome.heals == []
    conn = sqlite3.connect(db)
    try:
        kept = sorted(v for (v,) in conn.execute(f"SELECT version FROM {DOWN_TEXTS_TABLE}"))
    finally:
        conn.close()
    assert kept == sorted(int(p.name[:4]) for p in kit.MIGRATIONS.glob("*.down.sql"))
    again = kit.apply_range(db)
    assert not again.plan.changes_anything, "kept once, a run is a no-op again"
