"""migrations/history.lock: every released text of every migration, from git. It must never go
stale (checked against the repository's own history), and it lets the planner explain a
changed file on a ledger that kept no provenance (one written by sqlx): a comment-only edit is
re-stamped with the history as evidence, a change in meaning names the release and shows the
diff, and bytes no release had are reported as unknown."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from daemon import __version__
from daemon.migrate import Blocked, inspect, run_migrations
from daemon.migrate.history import LOCK_NAME, HistoryUnavailable, generate, load_history
from tests import kit, migfiles
from tests.sqlx_emulator import sqlx_apply

REPO = Path(__file__).resolve().parent.parent
FIRST = {
    **migfiles.BASIC,
    "0002_accounts_add_plan.sql": (
        "ALTER TABLE accounts ADD COLUMN plan TEXT NOT NULL DEFAULT 'free';\n"
    ),
}
# Released later: the same statement, with a comment line (meaning unchanged).
SECOND = {
    "0002_accounts_add_plan.sql": (
        "-- Every account gets a plan; existing ones start on 'free'.\n"
        "ALTER TABLE accounts ADD COLUMN plan TEXT NOT NULL DEFAULT 'free';\n"
    )
}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture
def repo(tmp_path) -> Path:
    """A repository with two commits of its migrations folder: FIRST, then SECOND on top."""
    root = tmp_path / "project"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "t@example.com")
    git(root, "config", "user.name", "t")
    migfiles.write(root / "migrations", FIRST)
    git(root, "add", ".")
    git(root, "commit", "-qm", "first release")
    migfiles.write(root / "migrations", SECOND)
    git(root, "commit", "-qam", "a comment in 0002")
    (root / "migrations" / LOCK_NAME).write_text(generate(root / "migrations"))
    return root


def run(db: Path, folder: Path):
    return run_migrations(db, folder, idempotent=frozenset(), daemon_version=__version__)


def sqlx_ledger_of_first_release(tmp_path: Path) -> Path:
    """A database migrated by sqlx (the emulator writes its ledger exactly, no provenance)
    from the first release's texts."""
    db = tmp_path / "app.db"
    sqlx_apply(db, migfiles.write(tmp_path / "first", FIRST))
    return db


def heal_log(db: Path) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT version, action, evidence FROM _keysmith_heal_log").fetchall()
    finally:
        conn.close()


def test_the_lock_lists_every_released_text_with_its_release(repo):
    doc = json.loads((repo / "migrations" / LOCK_NAME).read_text())
    texts = doc["migrations"]["2"]
    first_commit = git(repo, "log", "--reverse", "--format=%H").split()[0]
    assert [t["release"].split()[0] for t in texts] == [first_commit[:12], "current"]
    assert texts[0]["text"] == FIRST["0002_accounts_add_plan.sql"] and texts[1]["text"] is None
    assert texts[0]["tokens_sha384"] == texts[1]["tokens_sha384"]  # comments only
    assert [t["release"] for t in doc["migrations"]["1"]] == ["current"]


def test_a_comment_only_edit_on_a_sqlx_ledger_is_restamped_with_the_history(repo, tmp_path):
    db = sqlx_ledger_of_first_release(tmp_path)
    before = kit.dump(sqlite3.connect(db))
    outcome = run(db, repo / "migrations")
    (heal,) = outcome.heals
    assert (heal.version, heal.action) == (2, "restamp")
    first_commit = git(repo, "log", "--reverse", "--format=%H").split()[0][:12]
    assert f"released in commit {first_commit}" in heal.evidence, heal.evidence
    assert "history lock" in heal.evidence, heal.evidence
    assert kit.dump(sqlite3.connect(db)) == before, "a re-stamp runs no SQL"
    assert [(v, a) for v, a, _e in heal_log(db)] == [(2, "restamp")]


def test_without_the_lock_the_same_edit_is_refused(repo, tmp_path):
    """What the lock adds: the same ledger and folder, minus the lock, cannot be proved."""
    db = sqlx_ledger_of_first_release(tmp_path)
    (repo / "migrations" / LOCK_NAME).unlink()
    with pytest.raises(Blocked, match="not cosmetic"):
        run(db, repo / "migrations")


def test_a_released_text_with_another_meaning_names_the_release_and_shows_the_diff(repo, tmp_path):
    db = sqlx_ledger_of_first_release(tmp_path)
    changed = "ALTER TABLE accounts ADD COLUMN plan TEXT NOT NULL DEFAULT 'pro';\n"
    migfiles.write(repo / "migrations", {"0002_accounts_add_plan.sql": changed})
    git(repo, "commit", "-qam", "0002 starts on pro")
    (repo / "migrations" / LOCK_NAME).write_text(generate(repo / "migrations"))
    before = kit.dump(sqlite3.connect(db), include_ledger=True)
    with pytest.raises(Blocked) as error:
        run(db, repo / "migrations")
    first_commit = git(repo, "log", "--reverse", "--format=%H").split()[0][:12]
    assert f"applied as the text released in commit {first_commit}" in str(error.value)
    plan = inspect(db, repo / "migrations", frozenset())
    (blocked,) = plan.blockers
    assert "-ALTER TABLE accounts ADD COLUMN plan TEXT NOT NULL DEFAULT 'free';" in blocked.detail
    assert "+ALTER TABLE accounts ADD COLUMN plan TEXT NOT NULL DEFAULT 'pro';" in blocked.detail
    assert kit.dump(sqlite3.connect(db), include_ledger=True) == before


def test_bytes_no_release_had_are_reported_as_unknown(repo, tmp_path):
    db = tmp_path / "app.db"
    edited = {**FIRST, "0002_accounts_add_plan.sql": "ALTER TABLE accounts ADD COLUMN plan TEXT;\n"}
    sqlx_apply(db, migfiles.write(tmp_path / "hand", edited))
    with pytest.raises(Blocked, match="unknown bytes"):
        run(db, repo / "migrations")


def test_a_shallow_clone_cannot_build_the_lock_and_says_so(repo, tmp_path):
    shallow = tmp_path / "shallow"
    subprocess.run(
        ["git", "clone", "-q", "--depth", "1", f"file://{repo}", str(shallow)], check=True
    )
    with pytest.raises(HistoryUnavailable, match="shallow clone"):
        generate(shallow / "migrations")


def test_a_folder_outside_any_repository_cannot_build_the_lock(tmp_path):
    folder = migfiles.write(tmp_path / "loose", FIRST)
    with pytest.raises(HistoryUnavailable, match="git"):
        generate(folder)


def test_the_projects_own_lock_is_not_stale():
    """Regenerated from this repository's history, it must equal the committed one. Without
    the history (a shallow clone) this fails, never skips: CI clones have full history."""
    try:
        fresh = generate(kit.MIGRATIONS)
    except HistoryUnavailable as exc:
        pytest.fail(f"cannot check migrations/history.lock against the history: {exc}")
    committed = (kit.MIGRATIONS / LOCK_NAME).read_text()
    assert committed == fresh, "migrations/history.lock is stale: run `make migrations-history`"


def test_the_projects_own_lock_holds_an_older_text_the_planner_can_use(tmp_path):
    history = load_history(kit.MIGRATIONS)
    older = [(v, t) for v, texts in history.texts.items() for t in texts if t.release != "current"]
    assert older, "the project changed a migration once; its older text must be listed"
    version, released = older[0]
    # A sqlx ledger that applied that older text, with today's file in the folder: the lock
    # either proves a comment-only change or names the release; it never says "unknown".
    folder = migfiles.write(
        shutil.copytree(kit.MIGRATIONS, tmp_path / "older"),
        {Path(m).name: released.text for m in kit.MIGRATIONS.glob(f"{version:04d}_*")},
    )
    (folder / LOCK_NAME).unlink()
    db = tmp_path / "app.db"
    sqlx_apply(db, folder, upto=version)
    finding = next(
        f for f in inspect(db, kit.MIGRATIONS, frozenset()).findings if f.version == version
    )
    assert released.release in finding.evidence, finding.evidence
