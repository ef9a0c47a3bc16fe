"""Issue 11, defect 2: a failed `-- no-transaction` migration says exactly what state the
database is in, and never leaves it where every later run fails.

A no-transaction migration cannot be rolled back, so the migrator takes a backup before the run
even on a fresh database and restores it on failure: the database returns to where the run
began, and the versions this run applied before the failure are undone too (the message names
them; they run again next time). Once the broken migration is fixed, the next run completes.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from daemon.migrate import MigrationFailed
from tests import kit, migfiles

BROKEN_OUTSIDE = (
    "-- no-transaction\nCREATE TABLE outside (x);\nINSERT INTO no_such_table VALUES (1);\n"
)
FIXED_OUTSIDE = "-- no-transaction\nCREATE TABLE outside (x);\n"


def run(folder: Path, db: Path):
    return kit.apply_range(db, folder, idempotent=frozenset())


def tables(db: Path) -> set[str]:
    conn = sqlite3.connect(db)
    try:
        return {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()


def test_on_a_fresh_database_the_failure_returns_it_to_empty_and_the_next_run_succeeds(
    tmp_path,
):
    folder = migfiles.write(
        tmp_path / "m",
        {
            "0001_first.sql": "CREATE TABLE first (x);\n",
            "0002_outside.sql": BROKEN_OUTSIDE,
        },
    )
    db = tmp_path / "data" / "app.db"
    with pytest.raises(MigrationFailed) as error:
        run(folder, db)
    message = str(error.value)
    assert "the backup taken before this run was restored" in message, message
    assert "with no schema yet" in message
    assert "Migration 1, applied earlier in this run, was undone too" in message
    assert "will run again" in message
    assert error.value.undone == (1,) and error.value.data_intact is True
    # Exactly what the message says: nothing of this run is left, not even half of 0002.
    assert tables(db) == set()

    # The release is fixed; the next run starts from the empty database and completes.
    migfiles.write(folder, {"0002_outside.sql": FIXED_OUTSIDE})
    assert run(folder, db).applied == [1, 2]
    assert {"first", "outside"} <= tables(db)


def test_a_restore_that_undoes_earlier_migrations_of_the_run_names_them(tmp_path):
    folder = migfiles.write(tmp_path / "m", migfiles.BASIC)
    db = tmp_path / "data" / "app.db"
    run(folder, db)
    conn = kit.connect(db)
    conn.execute("INSERT INTO accounts (email) VALUES ('paid@example.com')")
    conn.close()
    before = kit.dump(kit.connect(db), include_ledger=True)
    migfiles.write(
        folder,
        {
            "0004_notes.sql": "CREATE TABLE notes (x);\n",
            "0005_tags.sql": "CREATE TABLE tags (x);\n",
            "0006_outside.sql": BROKEN_OUTSIDE,
        },
    )
    with pytest.raises(MigrationFailed) as error:
        run(folder, db)
    message = str(error.value)
    assert "at schema version 3" in message
    assert "Migrations 4, 5, applied earlier in this run, were undone too" in message
    assert not re.search(r"as it was before this migration", message)
    assert kit.dump(kit.connect(db), include_ledger=True) == before

    migfiles.write(folder, {"0006_outside.sql": FIXED_OUTSIDE})
    assert run(folder, db).applied == [4, 5, 6]


def test_a_transactional_failure_still_says_it_was_rolled_back(tmp_path):
    folder = migfiles.write(
        tmp_path / "m",
        {"0001_first.sql": "CREATE TABLE first (x);\nINSERT INTO no_such_table VALUES (1);\n"},
    )
    db = tmp_path / "app.db"
    with pytest.raises(MigrationFailed) as error:
        run(folder, db)
    assert "rolled back: the database is exactly as it was before this migration" in str(
        error.value
    )
    assert error.value.undone == () and not (tmp_path / "backups").exists()


# The volume fills up between a no-transaction body and its ledger row: the insert of version 5
# into the ledger fails as a full disk makes it fail. Planted as a trigger (it is in the backup
# too, so "as before the run" includes it); dropping it is the operator freeing space.
LEDGER_FULL = (
    "CREATE TRIGGER ledger_full BEFORE INSERT ON _sqlx_migrations WHEN NEW.version = 5 "
    "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
)


def test_a_ledger_failure_after_a_no_transaction_body_restores_and_the_next_run_succeeds(
    tmp_path,
):
    folder = migfiles.write(tmp_path / "m", migfiles.BASIC)
    db = tmp_path / "data" / "app.db"
    run(folder, db)
    conn = kit.connect(db)
    conn.execute("INSERT INTO accounts (email) VALUES ('paid@example.com')")
    conn.execute(LEDGER_FULL)
    conn.close()
    before = kit.dump(kit.connect(db), include_ledger=True)
    migfiles.write(
        folder,
        {"0004_notes.sql": "CREATE TABLE notes (x);\n", "0005_outside.sql": FIXED_OUTSIDE},
    )

    with pytest.raises(MigrationFailed) as error:
        run(folder, db)
    failure, message = error.value, str(error.value)
    assert failure.restored and failure.undone == (4,) and failure.data_intact, message
    assert "while recording migration 5 as applied" in message and "disk is full" in message
    assert "the backup taken before this run was restored" in message, message
    assert "at schema version 3" in message
    assert "Migration 4, applied earlier in this run, was undone too" in message
    assert "statements of migration 5 had all run" in message
    assert "as it was before this migration" not in message
    # Exactly what the message says: the body's table is gone with everything else of the run.
    assert kit.dump(kit.connect(db), include_ledger=True) == before

    # Space returns; the same release runs again from where the failed run began, and completes.
    conn = kit.connect(db)
    conn.execute("DROP TRIGGER ledger_full")
    conn.close()
    assert run(folder, db).applied == [4, 5]
    assert {"notes", "outside"} <= tables(db)
