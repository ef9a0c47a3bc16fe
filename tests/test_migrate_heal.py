"""The heal policy end to end on real SQLite files: what is healed, what is refused, and proof
(dumps and bytes compared) that a refusal or a failure changes nothing."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from daemon.migrate import (
    Blocked,
    DatabaseUnreadable,
    LockTimeout,
    MigrationFailed,
    Remedy,
    SourceError,
    inspect,
)
from daemon.migrate.backup import KEEP_BACKUPS, backups_dir, list_backups
from daemon.migrate.lock import lock_path_for
from tests import kit, migfiles

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def project(tmp_path):
    """A database at v3 of the BASIC history, with a few rows of data."""
    folder = migfiles.write(tmp_path / "migrations", migfiles.BASIC)
    db = tmp_path / "data" / "app.db"
    kit.apply_range(db, folder, idempotent=frozenset())
    conn = kit.connect(db)
    conn.execute("INSERT INTO accounts (email, plan) VALUES ('paid@example.com', 'pro')")
    conn.execute("INSERT INTO invoices (account_id) VALUES (2)")
    conn.close()
    return folder, db


def run(folder: Path, db: Path, idempotent: frozenset[int] = frozenset()):
    return kit.apply_range(db, folder, idempotent=idempotent)


def snapshot(db: Path) -> tuple[str, bytes]:
    conn = kit.connect(db)
    try:
        logical = kit.dump(conn, include_ledger=True)
    finally:
        conn.close()
    return logical, kit.file_bytes(db)


def heal_log(db: Path) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(
            "SELECT version, action, evidence, old_checksum, new_checksum, backup_file, "
            "daemon_version FROM _keysmith_heal_log ORDER BY id"
        ).fetchall()
    finally:
        conn.close()


ADDITIVE = "0002_accounts_add_plan.sql"
COSMETIC_EDITS = {
    "crlf": (lambda b: b.replace(b"\n", b"\r\n"), "line endings"),
    "bom": (lambda b: b"\xef\xbb\xbf" + b, "byte-order mark"),
    "trailing-whitespace": (lambda b: b.replace(b";\n", b";   \t\n"), "trailing whitespace"),
    "final-newline-removed": (lambda b: b.rstrip(b"\n"), "final newlines"),
    "final-newlines-added": (lambda b: b + b"\n\n", "final newlines"),
    "bom-crlf-and-no-newline": (
        lambda b: b"\xef\xbb\xbf" + b.replace(b"\n", b"\r\n").rstrip(b"\r\n"),
        "line endings",
    ),
}


@pytest.mark.parametrize("form", sorted(COSMETIC_EDITS))
def test_cosmetic_drift_of_an_additive_migration_is_restamped_without_rerun(project, form):
    folder, db = project
    edit, evidence = COSMETIC_EDITS[form]
    path = folder / ADDITIVE
    old_checksum = kit.checksums(db)[2]
    path.write_bytes(edit(path.read_bytes()))
    data_before = kit.dump(kit.connect(db))

    outcome = run(folder, db)

    # Re-running ADD COLUMN would have failed with "duplicate column"; it was re-stamped instead.
    (heal,) = outcome.heals
    assert (heal.version, heal.action) == (2, "restamp")
    assert evidence in heal.evidence
    assert kit.checksums(db)[2] == hashlib.sha384(path.read_bytes()).digest()
    assert kit.dump(kit.connect(db)) == data_before
    assert not backups_dir(db).exists(), "a re-stamp runs no SQL and needs no backup"
    ((version, action, logged, old, new, backup, daemon_version),) = heal_log(db)
    assert (version, action, backup) == (2, "restamp", None)
    assert evidence in logged and old == old_checksum and new == kit.checksums(db)[2]
    assert daemon_version
    assert run(folder, db).heals == [], "the next boot finds nothing to heal"


def test_checksums_recorded_with_sqlx_ignored_chars_are_taken_over(project):
    folder, db = project
    # A sqlx 0.9 daemon with `ignored-chars = [" ", "\t", "\n", "\r"]` hashed the file with
    # every whitespace character removed; the file itself is unchanged.
    raw = (folder / ADDITIVE).read_bytes()
    sqlx09 = hashlib.sha384(bytes(b for b in raw if b not in b" \t\r\n")).digest()
    conn = kit.connect(db)
    conn.execute("UPDATE _sqlx_migrations SET checksum = ? WHERE version = 2", (sqlx09,))
    conn.close()
    (heal,) = run(folder, db).heals
    assert heal.action == "restamp" and "ignored-chars" in heal.evidence


def test_a_comment_only_edit_is_restamped(project):
    folder, db = project
    path = folder / "0003_create_invoices.sql"
    path.write_text(
        "/* Invoices belong to an account. */\n"
        + path.read_text().replace("    memo", "    -- shown on the receipt\n    memo")
    )
    (heal,) = run(folder, db).heals
    assert heal.action == "restamp" and "comments/whitespace only" in heal.evidence


def _provenance(db: Path) -> dict[int, tuple[bytes, bytes, bytes]]:
    conn = sqlite3.connect(db)
    try:
        return {
            v: (bytes(sql), bytes(checksum), bytes(tokens))
            for v, sql, checksum, tokens in conn.execute(
                "SELECT version, applied_sql, checksum, normalized_sha384 FROM _keysmith_provenance"
            )
        }
    finally:
        conn.close()


def test_provenance_keeps_the_applied_text_and_leaves_its_token_hash_to_a_proof(project):
    # The token hash of every applied text cost a run of 1,000 migrations a tenth of its time;
    # it is derived from the kept text when a checksum differs (issue 23 part 8).
    folder, db = project
    kept = _provenance(db)
    assert sorted(kept) == [1, 2, 3]
    for version, (sql, checksum, tokens) in kept.items():
        (path,) = folder.glob(f"{version:04d}_*.sql")
        assert sql == path.read_bytes() and checksum == hashlib.sha384(sql).digest()
        assert tokens == b"", f"version {version} stored its token hash"


def test_provenance_rows_written_by_the_previous_release_still_prove_a_comment_only_edit(project):
    # The previous release stored each applied text's token hash beside it; its rows keep that
    # shape in every database it migrated, and must keep proving comment-only edits.
    from daemon.migrate.sqltext import normalized_sha384

    folder, db = project
    conn = kit.connect(db)
    for version, (sql, _checksum, _tokens) in _provenance(db).items():
        conn.execute(
            "UPDATE _keysmith_provenance SET normalized_sha384 = ? WHERE version = ?",
            (normalized_sha384(sql.decode()), version),
        )
    conn.close()
    path = folder / "0003_create_invoices.sql"
    path.write_text("-- Invoices belong to an account.\n" + path.read_text())

    (heal,) = run(folder, db).heals
    assert heal.action == "restamp" and "compared with the applied text" in heal.evidence
    sql, checksum, tokens = _provenance(db)[3]
    assert (sql, checksum, tokens) == (path.read_bytes(), kit.checksums(db)[3], b"")
    assert run(folder, db).heals == []


def test_a_kept_text_that_does_not_hash_to_the_ledger_proves_nothing(project):
    # The token hash is derived from the kept bytes only once they are shown to be what the
    # ledger says was applied; a tampered text with a plausible token hash proves nothing.
    from daemon.migrate.sqltext import normalized_sha384

    folder, db = project
    path = folder / "0003_create_invoices.sql"
    edited = "-- a comment\n" + path.read_text().replace("'thanks;  see you'", "'changed'")
    conn = kit.connect(db)
    conn.execute(
        "UPDATE _keysmith_provenance SET applied_sql = ?, normalized_sha384 = ? WHERE version = 3",
        (edited.encode(), normalized_sha384(edited)),
    )
    conn.close()
    path.write_text(edited)
    before = snapshot(db)
    with pytest.raises(Blocked) as error:
        run(folder, db)
    assert [b.version for b in error.value.blockers] == [3]
    assert snapshot(db) == before


def test_a_change_inside_a_string_literal_is_refused_and_nothing_changes(project):
    folder, db = project
    path = folder / "0003_create_invoices.sql"
    path.write_text(path.read_text().replace("'thanks;  see you'", "'thanks; see you'"))
    before = snapshot(db)
    with pytest.raises(Blocked) as error:
        run(folder, db)
    assert [b.version for b in error.value.blockers] == [3]
    assert snapshot(db) == before


def test_a_semantic_edit_of_a_migration_not_on_the_allowlist_is_refused(project):
    folder, db = project
    path = folder / ADDITIVE
    path.write_text(path.read_text().replace("DEFAULT 'free'", "DEFAULT 'trial'"))
    before = snapshot(db)
    with pytest.raises(Blocked) as error:
        run(folder, db)
    message = str(error.value)
    assert "migration 2" in message and "has been modified" in message
    assert "Nothing was changed" in message
    assert error.value.remedies == (Remedy.INSTALL_PREVIOUS_VERSION, Remedy.ACCEPT_CHANGE)
    assert snapshot(db) == before
    plan = inspect(db, folder, frozenset())
    assert "-ALTER TABLE accounts ADD COLUMN plan TEXT NOT NULL DEFAULT 'free';" in (
        plan.blockers[0].detail
    ), "the refusal shows what changed, from the applied text kept in provenance"


def test_every_blocker_is_reported_at_once_and_pending_ones_are_not_applied(project):
    folder, db = project
    (folder / ADDITIVE).write_text("ALTER TABLE accounts ADD COLUMN plan TEXT;\n")
    (folder / "0003_create_invoices.sql").unlink()
    migfiles.write(folder, {"0004_more.sql": "CREATE TABLE more (x);"})
    before = snapshot(db)
    with pytest.raises(Blocked) as error:
        run(folder, db)
    assert [b.version for b in error.value.blockers] == [2, 3]
    assert "migrated by a newer release" in error.value.blockers[1].finding
    assert error.value.blockers[1].remedies == (Remedy.INSTALL_NEWER_VERSION, Remedy.RESTORE_BACKUP)
    assert snapshot(db) == before


@pytest.mark.parametrize(
    ("damage", "finding"),
    [
        # success = false appears on SQLite only by hand or from another tool; 3 is not allowlisted.
        ("UPDATE _sqlx_migrations SET success = FALSE WHERE version = 3", "success = false"),
        (
            "UPDATE _sqlx_migrations SET checksum = x'00112233' WHERE version = 2",
            "4 bytes, not the 48 of a SHA-384",
        ),
    ],
)
def test_a_damaged_ledger_row_is_refused_with_a_clear_finding(project, damage, finding):
    folder, db = project
    conn = kit.connect(db)
    conn.execute(damage)
    conn.close()
    before = snapshot(db)
    with pytest.raises(Blocked) as error:
        run(folder, db)
    assert finding in str(error.value)
    assert snapshot(db) == before


def test_a_rerun_that_fails_rolls_back_its_row_deletion_too(project):
    folder, db = project
    conn = kit.connect(db)
    conn.execute("UPDATE _sqlx_migrations SET checksum = ? WHERE version = 2", (b"\xef" * 48,))
    conn.close()
    logical_before, _ = snapshot(db)
    # 2 is ADD COLUMN: not idempotent. Forcing it onto the allowlist makes the re-run fail.
    with pytest.raises(MigrationFailed) as error:
        run(folder, db, idempotent=frozenset({2}))
    assert "duplicate column name: plan" in str(error.value)
    assert snapshot(db)[0] == logical_before, "row, data and heal log all as before"


def test_a_foreign_key_failure_at_commit_leaves_nothing_behind(project):
    folder, db = project
    migfiles.write(
        folder,
        {
            "0004_notes.sql": (
                "CREATE TABLE notes (id INTEGER PRIMARY KEY, account_id INTEGER\n"
                "    REFERENCES accounts(id) DEFERRABLE INITIALLY DEFERRED);\n"
                "INSERT INTO notes (account_id) VALUES (999);\n"
            )
        },
    )
    before = snapshot(db)
    with pytest.raises(MigrationFailed) as error:
        run(folder, db)
    assert "FOREIGN KEY constraint failed" in str(error.value)
    assert "migration 4" in str(error.value)
    assert snapshot(db)[0] == before[0]


def test_python_executescript_is_not_atomic_but_our_executor_is(tmp_path):
    """Why the executor splits statements: executescript() COMMITs the open transaction first."""
    naive = sqlite3.connect(tmp_path / "naive.db", isolation_level=None)
    naive.execute("BEGIN")
    with pytest.raises(sqlite3.OperationalError):
        naive.executescript("CREATE TABLE half (x); INSERT INTO missing VALUES (1);")
    naive.execute("ROLLBACK") if naive.in_transaction else None
    assert naive.execute("SELECT count(*) FROM sqlite_master WHERE name='half'").fetchone() == (1,)

    folder = migfiles.write(
        tmp_path / "m", {"0001_half.sql": "CREATE TABLE half (x);\nINSERT INTO missing VALUES (1);"}
    )
    db = tmp_path / "ours.db"
    with pytest.raises(MigrationFailed):
        run(folder, db)
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name='half'").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM _sqlx_migrations").fetchone() == (0,)


def test_a_failed_no_transaction_migration_restores_the_backup(project):
    folder, db = project
    migfiles.write(
        folder,
        {
            "0004_outside.sql": (
                "-- no-transaction\n"
                "CREATE TABLE y (a);\n"
                "INSERT INTO accounts (email) VALUES ('second@example.com');\n"
                "INSERT INTO missing VALUES (1);\n"
            )
        },
    )
    before = snapshot(db)[0]
    with pytest.raises(MigrationFailed) as error:
        run(folder, db)
    assert "the backup taken before this run was restored" in str(error.value)
    assert "at schema version 3" in str(error.value) and error.value.undone == ()
    assert snapshot(db)[0] == before


def test_a_no_transaction_migration_that_succeeds_is_recorded(project):
    folder, db = project
    migfiles.write(folder, {"0004_vacuum.sql": "-- no-transaction\nVACUUM;\n"})
    assert run(folder, db).applied == [4]
    assert inspect(db, folder, frozenset()).steps == []


def test_a_backup_is_taken_before_sql_runs_and_holds_the_old_data(project):
    folder, db = project
    migfiles.write(folder, {"0004_wipe.sql": "DELETE FROM invoices;"})
    outcome = run(folder, db)
    assert outcome.backup is not None and outcome.backup.path.exists()
    saved = sqlite3.connect(outcome.backup.path)
    assert saved.execute("SELECT count(*) FROM invoices").fetchone() == (1,)
    assert saved.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert list_backups(db)[0].path == outcome.backup.path


def test_backups_are_bounded(project):
    folder, db = project
    for version in range(4, 4 + KEEP_BACKUPS + 2):
        migfiles.write(folder, {f"{version:04d}_step.sql": f"CREATE TABLE t{version} (x);"})
        run(folder, db)
    assert len(list_backups(db)) == KEEP_BACKUPS


def test_a_fresh_database_needs_no_backup(tmp_path):
    folder = migfiles.write(tmp_path / "m", migfiles.BASIC)
    outcome = run(folder, tmp_path / "new.db")
    assert outcome.applied == [1, 2, 3] and outcome.backup is None


def test_the_ledger_is_written_exactly_as_sqlx_writes_it(project):
    _folder, db = project
    conn = sqlite3.connect(db)
    (ddl,) = conn.execute("SELECT sql FROM sqlite_master WHERE name='_sqlx_migrations'").fetchone()
    assert ddl == (
        "CREATE TABLE _sqlx_migrations (\n"
        "    version BIGINT PRIMARY KEY,\n"
        "    description TEXT NOT NULL,\n"
        "    installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,\n"
        "    success BOOLEAN NOT NULL,\n"
        "    checksum BLOB NOT NULL,\n"
        "    execution_time BIGINT NOT NULL\n"
        ")"
    )
    rows = conn.execute(
        "SELECT version, description, typeof(installed_on), success, typeof(checksum), "
        "length(checksum), typeof(execution_time), execution_time > 0 FROM _sqlx_migrations"
    ).fetchall()
    assert rows == [
        (1, "create accounts", "text", 1, "blob", 48, "integer", 1),
        (2, "accounts add plan", "text", 1, "blob", 48, "integer", 1),
        (3, "create invoices", "text", 1, "blob", 48, "integer", 1),
    ]


def test_the_heal_log_is_append_only(project):
    folder, db = project
    path = folder / ADDITIVE
    path.write_bytes(path.read_bytes() + b"\n")
    run(folder, db)
    conn = sqlite3.connect(db)
    for statement in (
        "UPDATE _keysmith_heal_log SET action = 'rerun'",
        "DELETE FROM _keysmith_heal_log",
    ):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute(statement)


def test_an_unusable_migrations_folder_changes_nothing(project):
    folder, db = project
    (folder / "0004_latin1.sql").write_bytes(b"SELECT 'caf\xe9';")
    before = snapshot(db)
    with pytest.raises(SourceError, match=r"0004_latin1\.sql"):
        run(folder, db)
    assert snapshot(db) == before


def test_a_file_that_is_not_a_database_is_reported_and_left_alone(tmp_path):
    folder = migfiles.write(tmp_path / "m", migfiles.BASIC)
    db = tmp_path / "random.db"
    garbage = bytes(range(256)) * 64
    db.write_bytes(garbage)
    with pytest.raises(DatabaseUnreadable) as error:
        run(folder, db)
    assert "cannot be read as SQLite" in str(error.value) and str(db) in str(error.value)
    assert db.read_bytes() == garbage


def test_planning_never_creates_the_database(tmp_path):
    folder = migfiles.write(tmp_path / "m", migfiles.BASIC)
    plan = inspect(tmp_path / "absent.db", folder, frozenset())
    assert [f.action for f in plan.findings] == ["apply"] * 3
    assert not (tmp_path / "absent.db").exists()


def test_a_held_lock_makes_the_second_migrator_give_up_clearly(project):
    folder, db = project
    migfiles.write(folder, {"0004_more.sql": "CREATE TABLE more (x);"})
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            f"fd = os.open({str(lock_path_for(db))!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "os.write(fd, b'pid %d' % os.getpid())\n"
            "print('held', flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout.readline() == b"held\n"
        before = snapshot(db)
        with pytest.raises(LockTimeout) as error:
            kit.run_migrations(
                db, folder, idempotent=frozenset(), daemon_version="t", lock_timeout=0.3
            )
        assert f"pid {holder.pid}" in str(error.value)
        assert snapshot(db) == before
    finally:
        holder.kill()
        holder.wait()
    started = time.monotonic()
    assert run(folder, db).applied == [4], "the lock is free again once its holder is gone"
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("reader_holds_the_wal", [False, True])
def test_a_backup_is_an_exact_self_contained_copy(tmp_path, reader_holds_the_wal):
    from daemon.migrate.apply import open_for_migration
    from daemon.migrate.backup import _copy_file_under_write_lock, open_database_file, take_backup

    folder = migfiles.write(tmp_path / "m", migfiles.BASIC)
    db = tmp_path / "data" / "app.db"
    kit.apply_range(db, folder, idempotent=frozenset())
    conn = open_for_migration(db)
    conn.execute("INSERT INTO accounts (email) VALUES ('in-the-wal@example.com')")
    reader = sqlite3.connect(db)
    if reader_holds_the_wal:  # an open read snapshot keeps the WAL from being merged
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM accounts").fetchone()
    # The fast file copy is possible exactly when no reader pins the WAL.
    db_fd = open_database_file(db)
    fast = _copy_file_under_write_lock(conn, db_fd, db, tmp_path / "probe.sqlite3")
    assert fast is not reader_holds_the_wal
    backup = take_backup(conn, db_fd, db, 3)
    reader.close()
    copy = sqlite3.connect(backup.path)
    assert copy.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    assert kit.dump(copy, include_ledger=True) == kit.dump(conn, include_ledger=True)
    assert not backup.path.with_name(backup.path.name + "-wal").exists()
