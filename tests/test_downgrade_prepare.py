"""The actions 'Prepare a downgrade to Keysmith 0.1' and its cancel, with the real daemon on
real files: the schema goes back to what 0.1.0 knows (backup first), this version then leaves
the database alone until 0.1.0 has run on it or the owner cancels, and 0.1.0's own daemon
(from git history) serves on it."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from daemon import downgrade
from tests.daemon_proc import DaemonProc, base_env
from tests.kit import dump, latest_version, schema_of
from tests.startos.host import last_commit_of_release, release_tree

LATEST = latest_version()


def action(name: str, db: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", "action", name],
        env=base_env({"KEYSMITH_DB_PATH": str(db)}), capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def result(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def refusal(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1 and done.stdout == "", done
    assert "Traceback" not in done.stderr
    return done.stderr


def snapshot(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return dump(conn, include_ledger=True)
    finally:
        conn.close()


def issued(tmp_path: Path) -> tuple[Path, list[str]]:
    """A database at the newest schema with two licenses; their keys."""
    with DaemonProc(tmp_path) as d:
        admin = d.admin_headers()
        product = {"slug": "desk", "name": "Desk", "price_sats": 1000}
        d.request("POST", "/v1/admin/products", product, admin)
        d.request("POST", "/v1/admin/policies", {"product_slug": "desk", "slug": "std",
                  "name": "Std", "max_machines": 1, "is_default": True}, admin)  # fmt: skip
        keys = [d.request("POST", "/v1/admin/licenses", {"product_slug": "desk"}, admin)[1]
                ["license_key"] for _ in range(2)]  # fmt: skip
        return d.db_path, keys


def test_a_prepared_downgrade_holds_this_version_until_it_is_cancelled(tmp_path):
    db, _ = issued(tmp_path)
    prepared = result(action("prepare-downgrade", db))
    assert f"schema v{downgrade.OLDER_SCHEMA}" in prepared["message"], prepared
    members = {m["name"]: m["value"] for m in prepared["result"]["value"]}
    assert "scoped API keys" in members["Discarded"], members
    assert Path(members["Backup taken first"]).is_file(), members
    assert schema_of(db) == downgrade.OLDER_SCHEMA
    before = snapshot(db)
    with DaemonProc(tmp_path, wait=("blocked",)) as d:
        code, _, err = d.health()
        print(f"\nthe operator sees: {err}")
        assert code == 1 and "prepared for a downgrade to Keysmith 0.1.0" in err, err
        assert downgrade.CANCEL_NAME in err and "install Keysmith 0.1.0 now" in err, err
    assert snapshot(db) == before, "a held boot must not touch the database"
    result(action("cancel-downgrade", db))
    with DaemonProc(tmp_path) as d:
        assert d.status()["schema_version"] == LATEST


def test_the_hold_ends_once_0_1_0_has_served_on_the_database(tmp_path):
    db, keys = issued(tmp_path)
    result(action("prepare-downgrade", db))
    release = release_tree(last_commit_of_release("0.1.0"), tmp_path / "release-0.1.0")
    with DaemonProc(
        tmp_path, migrations_dir=release / "migrations", env={"PYTHONPATH": str(release)}
    ) as old:
        assert old.status()["daemon_version"] == "0.1.0", old.status()
        for key in keys:
            status, body = old.request("POST", "/v1/validate", {"key": key})
            assert status == 200 and body["ok"] is True, body
    # Installing this version again is an upgrade: it migrates and serves.
    with DaemonProc(tmp_path) as d:
        assert d.status()["schema_version"] == LATEST
    assert not downgrade.marker_path(db).exists()


def test_prepare_without_a_database_and_cancel_without_a_preparation_change_nothing(tmp_path):
    db = tmp_path / "data" / "keysmith.db"
    db.parent.mkdir()
    assert "nothing to prepare" in refusal(action("prepare-downgrade", db))
    assert list(db.parent.iterdir()) == []
    db, _ = issued(tmp_path)
    before = snapshot(db)
    assert "nothing to cancel" in refusal(action("cancel-downgrade", db))
    assert snapshot(db) == before
