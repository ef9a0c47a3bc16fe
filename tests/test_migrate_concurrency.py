"""Several processes migrating one database file at once: each migration runs exactly once."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from tests import kit, migfiles

REPO = Path(__file__).resolve().parent.parent


def test_concurrent_runs_apply_every_migration_exactly_once(tmp_path):
    # Each migration appends one row, so a migration applied twice would show as a duplicate.
    files = {
        "0001_runs.sql": "CREATE TABLE runs (version INTEGER NOT NULL);\n"
        "INSERT INTO runs VALUES (1);"
    }
    for version in range(2, 41):
        files[f"{version:04d}_step_{version}.sql"] = (
            f"CREATE TABLE t{version} (x);\nINSERT INTO runs VALUES ({version});"
        )
    folder = migfiles.write(tmp_path / "m", files)
    db = tmp_path / "shared.db"
    command = [
        sys.executable,
        "-m",
        "daemon",
        "migrate",
        "run",
        "--db",
        str(db),
        "--migrations",
        str(folder),
    ]
    runners = [
        subprocess.Popen(
            command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(6)
    ]
    results = [(r.wait(timeout=120), r.stderr.read()) for r in runners]
    assert all(code == 0 for code, _ in results), results

    conn = sqlite3.connect(db)
    runs = [v for (v,) in conn.execute("SELECT version FROM runs ORDER BY version")]
    assert runs == list(range(1, 41))
    ledger = [v for (v,) in conn.execute("SELECT version FROM _sqlx_migrations ORDER BY version")]
    assert ledger == list(range(1, 41))
    kit.assert_db_clean(conn)
