"""The operator's override: accept today's text of a migration blocked as modified, through the
CLI (`migrate accept VERSION`) and the StartOS action `accept-migration`. Only a blocked
(modified) migration is accepted; anything else is refused with nothing changed."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests import kit, migfiles
from tests.daemon_proc import REPO, base_env

CHANGED = {
    "0002_accounts_add_plan.sql": (
        "ALTER TABLE accounts ADD COLUMN plan TEXT NOT NULL DEFAULT 'pro';\n"
    )
}


def migrate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", "migrate", *args],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


@pytest.fixture
def blocked(tmp_path) -> tuple[Path, Path]:
    """A database applied from BASIC, and a folder whose 0002 changed in meaning since."""
    folder = migfiles.write(tmp_path / "m", migfiles.BASIC)
    db = tmp_path / "app.db"
    kit.apply_range(db, folder, idempotent=frozenset())
    migfiles.write(folder, CHANGED)
    return folder, db


def everything(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return kit.dump(conn, include_ledger=True)
    finally:
        conn.close()


def heal_log(db: Path) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT version, action, evidence FROM _keysmith_heal_log").fetchall()
    finally:
        conn.close()


def test_accepting_a_blocked_migration_lets_the_upgrade_through(blocked):
    folder, db = blocked
    paths = ("--db", str(db), "--migrations", str(folder), "--idempotent", "")
    assert migrate("run", *paths).returncode == 2
    before = kit.dump(sqlite3.connect(db))
    done = migrate("accept", "2", "--by", "alice", *paths)
    assert done.returncode == 0, done.stderr
    assert "WITHOUT running it" in done.stderr, done.stderr
    assert "keeps the schema and data the earlier text produced" in done.stderr
    assert "accepted migration 2" in done.stdout
    ((version, action, evidence),) = heal_log(db)
    assert (version, action) == (2, "accept")
    assert "accepted by the operator (alice)" in evidence and "UTC" in evidence
    assert kit.dump(sqlite3.connect(db)) == before, "no SQL ran: the schema is the old one"
    again = migrate("run", *paths, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) | {"seconds": 0} == {
        "schema_version": 3,
        "applied": [],
        "heals": [],
        "backup": None,
        "seconds": 0,
    }


@pytest.mark.parametrize(
    ("version", "why"),
    [
        ("1", "it is applied and matches its file"),
        ("9", "no migration has that version"),
    ],
)
def test_accept_refuses_what_is_not_blocked_as_modified_and_changes_nothing(blocked, version, why):
    folder, db = blocked
    before = everything(db)
    done = migrate(
        "accept", version, "--db", str(db), "--migrations", str(folder), "--idempotent", ""
    )
    assert done.returncode == 2, done.stderr
    assert why in done.stderr and "Nothing was changed" in done.stderr, done.stderr
    assert "migrate status" in done.stderr, "the remedy says where to look"
    assert everything(db) == before


def test_a_pending_migration_cannot_be_accepted(tmp_path):
    folder = migfiles.write(tmp_path / "m", migfiles.BASIC)
    db = tmp_path / "app.db"
    kit.apply_range(db, folder, upto=2)
    before = everything(db)
    done = migrate("accept", "3", "--db", str(db), "--migrations", str(folder))
    assert done.returncode == 2 and "not applied yet" in done.stderr, done.stderr
    assert everything(db) == before


def test_the_blocked_message_offers_the_override_last(blocked):
    folder, db = blocked
    done = migrate("run", "--db", str(db), "--migrations", str(folder), "--idempotent", "")
    assert done.returncode == 2
    fix = done.stderr.split("To fix:", 1)[1]
    assert fix.index("previous version") < fix.index("migrate accept"), fix


# ---- the StartOS action ------------------------------------------------------------------


def action(db: Path, folder: Path, form: dict) -> subprocess.CompletedProcess[str]:
    env = base_env({"KEYSMITH_DB_PATH": str(db), "KEYSMITH_MIGRATIONS_DIR": str(folder)})
    return subprocess.run(
        [sys.executable, "-m", "daemon", "action", "accept-migration", json.dumps(form)],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip


def test_the_action_needs_the_confirmation_then_accepts(tmp_path):
    # The action reads the daemon's idempotent allowlist: use a version not on it.
    folder = migfiles.write(tmp_path / "m", migfiles.BASIC)
    db = tmp_path / "app.db"
    kit.apply_range(db, folder)
    migfiles.write(folder, CHANGED)
    before = everything(db)
    unconfirmed = action(db, folder, {"version": 2, "confirm": False})
    assert unconfirmed.returncode == 1
    assert "I understand" in unconfirmed.stderr and "Nothing was changed" in unconfirmed.stderr
    assert everything(db) == before
    done = action(db, folder, {"version": 2, "confirm": True})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["title"] == "Migration accepted" and "no SQL ran" in result["message"]
    ((version, kind, evidence),) = heal_log(db)
    assert (version, kind) == (2, "accept") and "StartOS operator" in evidence
    refused = action(db, folder, {"version": 2, "confirm": True})
    assert refused.returncode == 1 and "Nothing was changed" in refused.stderr
    assert "Migration status" in refused.stderr, refused.stderr
