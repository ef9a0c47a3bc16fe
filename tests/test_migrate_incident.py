"""The incident Keysmith exists for, told step by step on the real licensing schema, and the
take-over of databases that a Rust sqlx daemon wrote."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import sqlite3

import pytest

from daemon import db as database
from daemon.migrate import Blocked
from daemon.migrate.source import load_source
from tests import kit
from tests.seed import count_rows, seed
from tests.sqlx_emulator import SqlxError, sqlx_apply, sqlx_validate

POISON = b"\xef" * 48


@pytest.fixture
def sqlx_shop(tmp_path):
    """A shop's database as the Rust daemon left it: every migration applied by sqlx (no
    provenance of ours), and realistic rows in every table."""
    migrations = tmp_path / "migrations"
    shutil.copytree(kit.MIGRATIONS, migrations)
    db = tmp_path / "keysmith.db"
    sqlx_apply(db, migrations)
    conn = kit.connect(db)
    seed(conn, kit.latest_version(migrations))
    conn.close()
    return migrations, db


def test_the_original_incident_v9_poisoned_is_rerun_and_the_daemon_boots(sqlx_shop):
    migrations, db = sqlx_shop
    conn = kit.connect(db)
    rows_before = count_rows(conn)
    assert rows_before["discount_redemptions"] > 0, "the case that breaks a naive 0009"
    # The upgrade ships a v9 whose bytes differ from the ones applied: model it as sqlx sees it.
    conn.execute("UPDATE _sqlx_migrations SET checksum = ? WHERE version = 9", (POISON,))
    conn.close()

    # What sqlx did at every boot, and StartOS restarted it every 15 s, forever:
    with pytest.raises(SqlxError, match="migration 9 was previously applied but has been modified"):
        sqlx_validate(db, migrations)

    pool = asyncio.run(_init_and_close(db, migrations))

    (heal,) = pool.outcome.heals
    assert (heal.version, heal.action) == (9, "rerun")
    assert heal.backup_path and (db.parent / "backups").is_dir()
    source = {m.version: m.checksum for m in load_source(migrations)}
    recorded = kit.checksums(db)
    assert recorded[9] == source[9] and recorded[10] == source[10]
    sqlx_validate(db, migrations)  # a sqlx daemon would boot on this database again
    conn = kit.connect(db)
    assert count_rows(conn) == rows_before
    kit.assert_db_clean(conn)


async def _init_and_close(db, migrations):
    pool = await database.init(db, migrations_dir=migrations)
    async with pool.connection() as conn:
        cursor = await conn.execute("PRAGMA foreign_keys")
        assert (await cursor.fetchone())[0] == 1
        cursor = await conn.execute("PRAGMA journal_mode")
        assert (await cursor.fetchone())[0] == "wal"
    await pool.close()
    return pool


def test_a_sqlx_ledger_is_taken_over_without_a_false_alarm(tmp_path):
    """Rows exactly as sqlx writes them, including an execution_time left at -1 by a crash and
    checksums recorded by a sqlx 0.9 daemon with ignored-chars = ["\\r"] on a CRLF checkout."""
    migrations = tmp_path / "migrations"
    shutil.copytree(kit.MIGRATIONS, migrations)
    for path in migrations.glob("000[1-4]_*.sql"):
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    db = tmp_path / "keysmith.db"
    sqlx_apply(db, migrations, upto=4, hash_input=lambda raw: raw.replace(b"\r", b""))
    sqlx_apply(db, migrations, upto=8, leave_execution_time_unset=frozenset({8}))
    conn = kit.connect(db)
    seed(conn, 8)
    data_before = kit.dump(conn)
    conn.close()

    outcome = kit.apply_range(db, migrations)

    assert {(h.version, h.action) for h in outcome.heals} == {(v, "restamp") for v in (1, 2, 3, 4)}
    # sha384 of the file without "\r" is also the hash of its LF form: either explanation holds.
    assert all(h.evidence.startswith("cosmetic:") for h in outcome.heals)
    assert outcome.applied == [
        v for v in sorted(m.version for m in load_source(migrations)) if v > 8
    ]
    conn = sqlite3.connect(db)
    assert conn.execute(
        "SELECT execution_time FROM _sqlx_migrations WHERE version = 8"
    ).fetchone() == (-1,)
    conn.close()
    sqlx_validate(db, migrations)  # handed back, a sqlx daemon accepts the ledger as it is
    assert kit.apply_range(db, migrations).heals == []
    conn = kit.connect(db)
    kit.assert_db_clean(conn)
    assert data_before.count("\n") <= kit.dump(conn).count("\n")


def test_comment_edits_are_provable_once_keysmith_has_kept_the_applied_text(sqlx_shop):
    migrations, db = sqlx_shop
    (migrations / "history.lock").unlink()  # the history is the other proof: see below
    migfile = next(migrations.glob("0010_*.sql"))
    original = migfile.read_bytes()
    migfile.write_bytes(b"-- reviewed 2026-11\n" + original)
    # sqlx keeps no text of what it applied, so right after a take-over, without the history
    # lock, this cannot be proven.
    with pytest.raises(Blocked):
        kit.apply_range(db, migrations)

    migfile.write_bytes(original)
    kit.apply_range(db, migrations)  # the first Keysmith boot records the applied text
    migfile.write_bytes(b"-- reviewed 2026-11\n" + original)
    (heal,) = kit.apply_range(db, migrations).heals
    assert heal.action == "restamp" and "comments/whitespace only" in heal.evidence
    assert kit.checksums(db)[10] == hashlib.sha384(migfile.read_bytes()).digest()


def test_right_after_a_take_over_the_history_lock_proves_a_comment_edit(sqlx_shop):
    """The issue's case: a ledger written by sqlx, today's file with one added comment line.
    The shipped history lock names the released text sqlx applied, whose tokens are today's."""
    migrations, db = sqlx_shop
    migfile = next(migrations.glob("0010_*.sql"))
    migfile.write_bytes(b"-- reviewed 2026-11\n" + migfile.read_bytes())
    (heal,) = kit.apply_range(db, migrations).heals
    assert (heal.version, heal.action) == (10, "restamp")
    assert "history lock" in heal.evidence, heal.evidence
