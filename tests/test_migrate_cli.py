"""`python -m daemon migrate status|plan|run`: the contract later checks rely on (exit codes,
JSON shape, sqlx-like text), exercised as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import kit, migfiles

REPO = Path(__file__).resolve().parent.parent


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", "migrate", *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def project(tmp_path):
    folder = migfiles.write(tmp_path / "m", migfiles.BASIC)
    return folder, tmp_path / "app.db"


def test_run_applies_then_finds_nothing_to_do(project):
    folder, db = project
    first = cli("run", "--db", str(db), "--migrations", str(folder))
    assert first.returncode == 0, first.stderr
    assert "applied 3 migration(s); schema v3" in first.stdout
    again = cli("run", "--db", str(db), "--migrations", str(folder), "--json")
    assert again.returncode == 0
    assert json.loads(again.stdout)["applied"] == []


# Modules a no-op `migrate run` must not load: its budget is opening the database and hashing
# the files (bench/bench_migrate.py holds it to 1.25x a bare stdlib loop doing just that).
NOT_FOR_A_NOOP_RUN = {
    "typing",
    "dataclasses",
    "logging",
    "json",
    "difflib",
    "aiohttp",
    "cryptography",
    "prometheus_client",
    "daemon.api",
    "daemon.licensing",
    "daemon.settings",
    "daemon.migrate.apply",
    "daemon.migrate.sqltext",
}


def test_a_noop_run_loads_only_what_it_needs(project):
    folder, db = project
    # PYTHONPROFILEIMPORTTIME is `-X importtime`: every module loaded is listed on stderr.
    args = ("run", "--db", str(db), "--migrations", str(folder))
    assert cli(*args).returncode == 0
    noop = cli(*args, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert noop.returncode == 0 and "nothing to do" in noop.stdout, noop.stderr[-2000:]
    imported = {
        line.rsplit("|", 1)[-1].strip()
        for line in noop.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "daemon.migrate.runner" in imported  # the listing is real
    assert not imported & NOT_FOR_A_NOOP_RUN, sorted(imported & NOT_FOR_A_NOOP_RUN)


def test_defaults_come_from_the_environment(project):
    folder, db = project
    env = {"KEYSMITH_DB_PATH": str(db), "KEYSMITH_MIGRATIONS_DIR": str(folder)}
    assert cli("run", env=env).returncode == 0
    assert db.exists()


def test_status_json_has_the_documented_shape(project):
    folder, db = project
    migfiles.write(
        folder, {"0002_accounts_add_plan.sql": migfiles.BASIC["0002_accounts_add_plan.sql"]}
    )
    kit.apply_range(db, folder, upto=2, idempotent=frozenset())
    (folder / "0002_accounts_add_plan.sql").write_bytes(
        migfiles.BASIC["0002_accounts_add_plan.sql"].replace("\n", "\r\n").encode()
    )
    result = cli("status", "--db", str(db), "--migrations", str(folder), "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert set(doc) == {"migrations", "blocked", "schema_version"}
    assert doc["schema_version"] == 2 and doc["blocked"] == []
    by_version = {m["version"]: m for m in doc["migrations"]}
    assert set(by_version[1]) == {"version", "description", "state", "action", "evidence"}
    assert (by_version[1]["state"], by_version[1]["action"]) == ("applied", "none")
    assert (by_version[2]["state"], by_version[2]["action"]) == ("modified", "restamp")
    assert "line endings" in by_version[2]["evidence"]
    assert (by_version[3]["state"], by_version[3]["action"]) == ("pending", "apply")


def test_status_text_reads_like_sqlx_migrate_info_with_findings(project):
    folder, db = project
    kit.apply_range(db, folder, idempotent=frozenset())
    path = folder / "0002_accounts_add_plan.sql"
    path.write_text(path.read_text().replace("'free'", "'trial'"))
    result = cli("status", "--db", str(db), "--migrations", str(folder))
    assert result.returncode == 2
    lines = result.stdout.splitlines()
    assert lines[0] == "1/installed create accounts"
    assert lines[1] == "2/installed (different checksum) accounts add plan"
    assert lines[2].startswith("    -> blocked: was previously applied but has been modified")
    assert any(line.startswith("    applied migration had checksum ") for line in lines)
    assert any(line.startswith("    local migration has checksum ") for line in lines)


@pytest.mark.parametrize(
    ("case", "files", "expected_exit", "expected_text"),
    [
        (
            "semantic edit",
            {"0002_accounts_add_plan.sql": "ALTER TABLE accounts ADD COLUMN x;"},
            2,
            "migration 2 (accounts add plan): was previously applied but has been modified",
        ),
        ("duplicate", {"2_again.up.sql": "SELECT 1;"}, 1, "duplicate version 2"),
        ("non-utf8", {"0004_bad.sql": b"SELECT '\xff';"}, 1, "0004_bad.sql: not valid UTF-8"),
        (
            "bad name",
            {"v4_bad.sql": "SELECT 1;"},
            1,
            'error parsing migration filename "v4_bad.sql"',
        ),
        (
            "failing sql",
            {"0004_broken.sql": "CREATE TABLE ok (x); INSERT INTO nope VALUES (1);"},
            1,
            "while executing migration 4: OperationalError: no such table: nope",
        ),
    ],
)
def test_every_refusal_has_its_exit_code_and_message_and_changes_nothing(
    project, case, files, expected_exit, expected_text
):
    folder, db = project
    kit.apply_range(db, folder, idempotent=frozenset())
    before = kit.dump(kit.connect(db), include_ledger=True)
    migfiles.write(folder, files)
    for step in ("plan", "run"):
        result = cli(step, "--db", str(db), "--migrations", str(folder))
        if step == "plan" and case == "failing sql":
            assert result.returncode == 0  # the plan cannot know; the run finds out
            continue
        assert result.returncode == expected_exit, (case, step, result.stderr)
        assert expected_text in result.stdout + result.stderr, result
        assert "Traceback" not in result.stderr
    assert kit.dump(kit.connect(db), include_ledger=True) == before


def test_plan_says_what_run_would_do_and_changes_nothing(project):
    folder, db = project
    kit.apply_range(db, folder, upto=2, idempotent=frozenset())
    before = kit.file_bytes(db)
    result = cli("plan", "--db", str(db), "--migrations", str(folder))
    assert result.returncode == 0
    assert result.stdout.splitlines() == ["back up the database first", "apply 3 (create invoices)"]
    assert kit.file_bytes(db) == before


def test_idempotent_option_overrides_the_allowlist(project):
    folder, db = project
    kit.apply_range(db, folder, idempotent=frozenset())
    path = folder / "0003_create_invoices.sql"
    path.write_text(path.read_text().replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS"))
    assert cli("plan", "--db", str(db), "--migrations", str(folder)).returncode == 2
    result = cli("run", "--db", str(db), "--migrations", str(folder), "--idempotent", "3")
    assert result.returncode == 0, result.stderr
    assert "healed 3 (rerun)" in result.stdout
    bad = cli("run", "--db", str(db), "--migrations", str(folder), "--idempotent", "three")
    assert bad.returncode == 2 and "--idempotent" in bad.stderr
