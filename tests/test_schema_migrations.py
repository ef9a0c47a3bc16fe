"""Every migration of the licensing schema, applied to a database full of realistic rows.

Each test builds a database at the version before through the real migrator, seeds every table
of the foreign-key web (tests/seed.py), applies the migration under test, and checks that the
rows survived, the new parts work, and the database is clean (integrity and foreign keys).

0009 gets the most attention: it is the migration of the incident this project comes from
(it was re-run after 0010 by a self-heal), and a rebuild of a referenced table is where a
naive migration loses a shop's data or refuses to commit.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from pathlib import Path

import pytest

from daemon.migrate import MigrationFailed
from daemon.schema import IDEMPOTENT_MIGRATIONS
from tests import kit
from tests.seed import TABLE_SINCE, count_rows, seed

LATEST = kit.latest_version()


def _database_at(tmp_path: Path, version: int, scale: int = 1) -> tuple[Path, sqlite3.Connection]:
    """A database at `version`, through the real migrator, seeded at that version."""
    db = tmp_path / "keysmith.db"
    kit.apply_range(db, upto=version)
    conn = kit.connect(db)
    seed(conn, version, scale)
    kit.assert_db_clean(conn)
    return db, conn


def _rows(conn: sqlite3.Connection, table: str, columns: str = "*") -> list[tuple]:
    return conn.execute(f"SELECT {columns} FROM {table} ORDER BY rowid").fetchall()


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


def _indexes(conn: sqlite3.Connection, table: str) -> set[str]:
    return {
        row[1]
        for row in conn.execute(f"PRAGMA index_list({table})")
        if not row[1].startswith("sqlite_autoindex")
    }


def _plan(conn: sqlite3.Connection, sql: str, *args: object) -> str:
    return " ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", args))


Snapshot = dict[str, tuple[str, list[tuple]]]


def _snapshot(conn: sqlite3.Connection) -> Snapshot:
    """Every row of every table, with its rowid, in the columns the table has now."""
    snapshot = {}
    for table in count_rows(conn):
        columns = ", ".join(["rowid", *_columns(conn, table)])
        snapshot[table] = (columns, _rows(conn, table, columns))
    return snapshot


def _unchanged_since(conn: sqlite3.Connection, before: Snapshot) -> None:
    """The same rows, rowids and values in every column that existed before."""
    for table, (columns, rows) in before.items():
        assert _rows(conn, table, columns) == rows, f"rows of {table} changed"


def _first(before: Snapshot, table: str) -> tuple:
    """The first row of a table in a snapshot, without its rowid."""
    return before[table][1][0][1:]


# ---------------------------------------------------------------- 0001 .. 0008


def test_0001_creates_every_licensing_table_and_takes_a_full_shop(tmp_path):
    _db, conn = _database_at(tmp_path, 1)
    counts = count_rows(conn)
    assert set(counts) == {t for t, since in TABLE_SINCE.items() if since == 1}
    assert all(n > 0 for n in counts.values()), counts
    # A second active issuer key would make "which key signs" ambiguous.
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE constraint failed: issuer_keys"):
        conn.execute(
            "INSERT INTO issuer_keys (private_key, public_key, created_at, active) "
            "VALUES (randomblob(32), randomblob(32), 1, 1)"
        )
    assert count_rows(conn) == counts


def test_0002_indexes_keep_every_row_and_serve_the_admin_lookups(tmp_path):
    db, conn = _database_at(tmp_path, 1)
    before = _snapshot(conn)
    kit.apply_range(db, upto=2)
    _unchanged_since(conn, before)
    kit.assert_db_clean(conn)
    product_id = _first(before, "products")[0]
    plan = _plan(conn, "SELECT * FROM licenses WHERE product_id = ? ORDER BY issued_at", product_id)
    assert "licenses_product_idx" in plan


def test_0003_policies_arrive_empty_and_existing_licenses_keep_no_policy(tmp_path):
    db, conn = _database_at(tmp_path, 2)
    before = _snapshot(conn)
    kit.apply_range(db, upto=3)
    _unchanged_since(conn, before)
    assert count_rows(conn)["policies"] == 0
    for table in ("licenses", "invoices"):
        linked = conn.execute(f"SELECT count(*) FROM {table} WHERE policy_id IS NOT NULL")
        assert linked.fetchone() == (0,), table
    kit.assert_db_clean(conn)
    # The new foreign key is live: a license cannot point at a policy that does not exist.
    license_id = _first(before, "licenses")[0]
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        conn.execute("UPDATE licenses SET policy_id = 'no-such-policy' WHERE id = ?", (license_id,))
    assert _rows(conn, "licenses", "policy_id")[0] == (None,)


def test_0004_backfills_trial_and_entitlements_from_each_license_policy(tmp_path):
    db, conn = _database_at(tmp_path, 3)
    # A license issued before policies existed has none; it must keep the defaults.
    legacy_id = conn.execute("SELECT id FROM licenses ORDER BY rowid LIMIT 1").fetchone()[0]
    conn.execute("UPDATE licenses SET policy_id = NULL WHERE id = ?", (legacy_id,))
    expected = dict(
        conn.execute(
            "SELECT l.id, json_array(p.is_trial, json(p.entitlements)) FROM licenses AS l "
            "JOIN policies AS p ON p.id = l.policy_id"
        ).fetchall()
    )
    assert {json.loads(v)[0] for v in expected.values()} == {0, 1}, "seed lacks trials"
    before = _snapshot(conn)
    kit.apply_range(db, upto=4)
    _unchanged_since(conn, before)
    got = dict(
        conn.execute(
            "SELECT id, json_array(is_trial, json(entitlements)) FROM licenses "
            "WHERE policy_id IS NOT NULL"
        ).fetchall()
    )
    assert got == expected
    assert conn.execute(
        "SELECT is_trial, entitlements FROM licenses WHERE id = ?", (legacy_id,)
    ).fetchone() == (0, "[]")
    kit.assert_db_clean(conn)


def test_0005_discount_tables_arrive_and_lack_the_set_price_kind(tmp_path):
    db, conn = _database_at(tmp_path, 4)
    before = _snapshot(conn)
    kit.apply_range(db, upto=5)
    _unchanged_since(conn, before)
    assert conn.execute("SELECT DISTINCT discount_sats FROM invoices").fetchall() == [(0,)]
    assert count_rows(conn)["discount_codes"] == 0
    kit.assert_db_clean(conn)
    # The gap 0009 closes: a set_price code is refused by the CHECK, and nothing is written.
    with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed"):
        conn.execute(
            "INSERT INTO discount_codes (id, code, kind, amount, created_at) "
            "VALUES ('c1', 'FLAT1K', 'set_price', 1000, 1)"
        )
    assert count_rows(conn)["discount_codes"] == 0


def test_0006_machines_keep_their_rows_and_count_seats_through_the_active_index(tmp_path):
    db, conn = _database_at(tmp_path, 5)
    before = _snapshot(conn)
    kit.apply_range(db, upto=6)
    _unchanged_since(conn, before)
    assert conn.execute(
        "SELECT count(*) FROM machines WHERE hostname IS NOT NULL OR deactivated_at IS NOT NULL"
    ).fetchone() == (0,)
    kit.assert_db_clean(conn)
    license_id = _first(before, "machines")[1]
    plan = _plan(
        conn,
        "SELECT count(*) FROM machines WHERE license_id = ? AND deactivated_at IS NULL",
        license_id,
    )
    assert "machines_active_idx" in plan


def test_0007_storefront_fields_default_and_one_default_policy_per_product(tmp_path):
    db, conn = _database_at(tmp_path, 6)
    before = _snapshot(conn)
    kit.apply_range(db, upto=7)
    _unchanged_since(conn, before)
    catalogs = conn.execute("SELECT DISTINCT entitlements_catalog FROM products").fetchall()
    assert catalogs == [("[]",)]
    assert conn.execute(
        "SELECT DISTINCT highlighted, sort_order, is_default FROM policies"
    ).fetchall() == [(0, 0, 0)]
    kit.assert_db_clean(conn)
    product_id = _first(before, "products")[0]
    conn.execute(
        "UPDATE policies SET is_default = 1 WHERE product_id = ? AND slug = 'yearly'", (product_id,)
    )
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE constraint failed"):
        conn.execute(
            "UPDATE policies SET is_default = 1 WHERE product_id = ? AND slug = 'trial'",
            (product_id,),
        )
    assert conn.execute(
        "SELECT slug FROM policies WHERE product_id = ? AND is_default = 1", (product_id,)
    ).fetchall() == [("yearly",)]


def test_0008_redemption_indexes_keep_every_redemption(tmp_path):
    db, conn = _database_at(tmp_path, 7)
    before = _snapshot(conn)
    assert before["discount_redemptions"][1], "seed made no redemptions"
    kit.apply_range(db, upto=8)
    _unchanged_since(conn, before)
    assert {"discount_redemptions_license_idx", "discount_redemptions_invoice_idx"} <= _indexes(
        conn, "discount_redemptions"
    )
    kit.assert_db_clean(conn)


# ---------------------------------------------------------------- 0009

# The rebuild as it is usually written (SQLite's "12 steps" without the PRAGMA foreign_keys=OFF,
# which is a no-op inside the migrator's transaction anyway). defer_foreign_keys is what people
# add when the DROP TABLE itself fails; it only moves the failure to COMMIT.
NAIVE_REBUILD = """
CREATE TABLE discount_codes_new (
    id TEXT PRIMARY KEY, code TEXT NOT NULL UNIQUE COLLATE NOCASE,
    product_id TEXT REFERENCES products (id), policy_id TEXT REFERENCES policies (id),
    kind TEXT NOT NULL CHECK (kind IN ('percent', 'fixed_sats', 'free_license', 'set_price')),
    amount INTEGER NOT NULL DEFAULT 0, max_redemptions INTEGER, expires_at INTEGER,
    disabled INTEGER NOT NULL DEFAULT 0, note TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL)
;INSERT INTO discount_codes_new SELECT * FROM discount_codes
;DROP TABLE discount_codes
;ALTER TABLE discount_codes_new RENAME TO discount_codes
"""


def _start_naive_rebuild(conn: sqlite3.Connection, *, deferred: bool) -> None:
    """Run the naive rebuild up to, not including, COMMIT. The caller commits or rolls back."""
    conn.execute("BEGIN")
    if deferred:
        conn.execute("PRAGMA defer_foreign_keys = ON")
    for statement in NAIVE_REBUILD.split("\n;"):
        conn.execute(statement)


def test_0009_naive_rebuild_fails_at_commit_when_redemptions_exist(tmp_path):
    # The failure this migration was written against: on any shop that had sold with a code,
    # the copy-drop-rename rebuild refused to commit ("FOREIGN KEY constraint failed"), so the
    # daemon could not upgrade. The data even looks fine just before COMMIT; the DROP's
    # implicit delete counted violations that the RENAME never uncounts.
    _db, conn = _database_at(tmp_path, 8)
    assert count_rows(conn)["discount_redemptions"] > 0
    before = kit.dump(conn)
    _start_naive_rebuild(conn, deferred=True)
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY constraint failed"):
        conn.execute("COMMIT")
    conn.execute("ROLLBACK")
    # Without the deferral it fails one step earlier, at the DROP TABLE.
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY constraint failed"):
        _start_naive_rebuild(conn, deferred=False)
    conn.execute("ROLLBACK")
    assert kit.dump(conn) == before


def test_0009_naive_rebuild_only_works_on_a_shop_without_redemptions(tmp_path):
    # The control for the test above: it is the redemptions that break the naive rebuild, which
    # is why it passed on the developer's empty database and failed on operators' real ones.
    _db, conn = _database_at(tmp_path, 8)
    conn.execute("DELETE FROM discount_redemptions")
    _start_naive_rebuild(conn, deferred=True)
    conn.execute("COMMIT")
    schema = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'discount_codes'")
    assert "'set_price'" in schema.fetchone()[0]


def test_0009_rebuild_keeps_redemptions_that_break_a_naive_copy(tmp_path):
    db, conn = _database_at(tmp_path, 8)
    # Gaps in the rowids, as deletions leave them, so that keeping rowids is really tested.
    conn.execute("DELETE FROM discount_redemptions WHERE rowid % 3 = 0")
    conn.execute(
        "DELETE FROM discount_codes WHERE rowid % 3 = 0 "
        "AND id NOT IN (SELECT code_id FROM discount_redemptions)"
    )
    before = _snapshot(conn)
    indexes_before = {t: _indexes(conn, t) for t in ("discount_codes", "discount_redemptions")}
    assert before["discount_redemptions"][1], "seed made no redemptions"
    kit.apply_range(db, upto=9)
    # Same rows, same rowids, in every table (0009 touches two and must not disturb the rest).
    _unchanged_since(conn, before)
    for table in ("discount_codes", "discount_redemptions"):
        assert _indexes(conn, table) == indexes_before[table], f"{table} lost an index"
    assert conn.execute(
        "SELECT count(*) FROM audit_log WHERE action = 'migration.0009.heal'"
    ).fetchone() == (0,)
    kit.assert_db_clean(conn)
    # The point of it all: a set_price code is accepted now.
    conn.execute(
        "INSERT INTO discount_codes (id, code, kind, amount, created_at) "
        "VALUES ('7d0b5b0c-0c1e-4a39-9d0e-1b1a5d7c9e01', 'FLAT1K-NEW', 'set_price', 1000, 1)"
    )
    kit.assert_db_clean(conn)


def _orphans_written_with_foreign_keys_off(db: Path) -> dict[str, str]:
    """Rows pointing at nothing, as a hand edit or an old tool with foreign keys off leaves them."""
    ids = {
        name: str(uuid.uuid4())
        for name in (
            "gone_code",
            "gone_invoice",
            "gone_license",
            "gone_product",
            "orphan_redemption",
            "half_orphan_redemption",
            "code_of_gone_product",
        )
    }
    raw = sqlite3.connect(db, isolation_level=None)  # foreign_keys is off by default
    try:
        assert raw.execute("PRAGMA foreign_keys").fetchone() == (0,)
        live_code = raw.execute("SELECT id FROM discount_codes LIMIT 1").fetchone()[0]
        raw.execute("BEGIN")
        raw.executemany(
            "INSERT INTO discount_redemptions (id, code_id, invoice_id, license_id, buyer_email, "
            "redeemed_at) VALUES (?, ?, ?, ?, 'erin.77@example.org', ?)",
            [
                (
                    ids["orphan_redemption"],
                    ids["gone_code"],
                    ids["gone_invoice"],
                    ids["gone_license"],
                    1_700_000_000,
                ),
                (
                    ids["half_orphan_redemption"],
                    live_code,
                    ids["gone_invoice"],
                    None,
                    1_700_000_100,
                ),
            ],
        )
        raw.execute(
            "INSERT INTO discount_codes (id, code, product_id, kind, amount, created_at) "
            "VALUES (?, 'SPRING10-OLD', ?, 'percent', 10, 1690000000)",
            (ids["code_of_gone_product"], ids["gone_product"]),
        )
        raw.execute("COMMIT")
    finally:
        raw.close()
    return ids


def test_0009_heals_orphans_without_losing_a_redemption(tmp_path):
    # Orphans make a plain restore fail at its first INSERT; 0009 keeps every row instead,
    # unlinks what points at nothing, and writes down what it removed.
    db, conn = _database_at(tmp_path, 8)
    ids = _orphans_written_with_foreign_keys_off(db)
    assert conn.execute("PRAGMA foreign_key_check").fetchall(), "orphans were not written"
    counts = count_rows(conn)
    kit.apply_range(db, upto=9)
    kit.assert_db_clean(conn)
    after = count_rows(conn)
    assert after["discount_redemptions"] == counts["discount_redemptions"]
    assert after["discount_codes"] == counts["discount_codes"] + 1  # the placeholder
    assert after["audit_log"] == counts["audit_log"] + 3
    assert conn.execute(
        "SELECT code_id, invoice_id, license_id FROM discount_redemptions WHERE id = ?",
        (ids["orphan_redemption"],),
    ).fetchone() == (ids["gone_code"], None, None)
    assert conn.execute(
        "SELECT code, kind, amount, disabled FROM discount_codes WHERE id = ?", (ids["gone_code"],)
    ).fetchone() == (f"MISSING-{ids['gone_code']}", "fixed_sats", 0, 1)
    assert conn.execute(
        "SELECT invoice_id FROM discount_redemptions WHERE id = ?", (ids["half_orphan_redemption"],)
    ).fetchone() == (None,)
    # A code for a product that is gone must not become a code for every product.
    assert conn.execute(
        "SELECT product_id, disabled FROM discount_codes WHERE id = ?",
        (ids["code_of_gone_product"],),
    ).fetchone() == (None, 1)
    heals = {
        subject: json.loads(detail)
        for subject, detail in conn.execute(
            "SELECT subject, detail FROM audit_log WHERE action = 'migration.0009.heal'"
        )
    }
    assert heals == {
        f"discount_redemption:{ids['orphan_redemption']}": {
            "missing_code_id": ids["gone_code"],
            "missing_invoice_id": ids["gone_invoice"],
            "missing_license_id": ids["gone_license"],
        },
        f"discount_redemption:{ids['half_orphan_redemption']}": {
            "missing_code_id": None,
            "missing_invoice_id": ids["gone_invoice"],
            "missing_license_id": None,
        },
        f"discount_code:{ids['code_of_gone_product']}": {
            "missing_product_id": ids["gone_product"],
            "missing_policy_id": None,
            "disabled": 1,
        },
    }
    # Healing is done once: a re-run finds nothing left to heal and changes nothing.
    healed = kit.dump(conn)
    kit.rerun(db, 9)
    assert kit.dump(conn) == healed


def test_0009_run_twice_gives_the_same_database(tmp_path):
    db, conn = _database_at(tmp_path, 8)
    kit.apply_range(db, upto=9)
    once = kit.dump(conn)
    kit.rerun(db, 9)
    assert kit.dump(conn) == once
    kit.assert_db_clean(conn)


def test_0009_rerun_on_the_latest_schema_changes_nothing(tmp_path):
    # The incident itself: 0009's bytes changed after the fact, and the self-heal re-ran it on
    # databases already at 0010 or later. Any later migration touching the discount tables
    # would make this re-run undo it; this test is what holds that line.
    db, conn = _database_at(tmp_path, LATEST)
    assert LATEST >= 10
    assert count_rows(conn)["discount_redemptions"] > 0
    set_price = conn.execute("SELECT count(*) FROM discount_codes WHERE kind = 'set_price'")
    assert set_price.fetchone()[0] > 0
    before = kit.dump(conn)
    kit.rerun(db, 9)
    assert kit.dump(conn) == before
    kit.assert_db_clean(conn)


# ---------------------------------------------------------------- 0010 .. latest


def test_0010_backfills_every_price_as_bitcoin_minor_units(tmp_path):
    db, conn = _database_at(tmp_path, 9)
    before = _snapshot(conn)
    kit.apply_range(db, upto=10)
    _unchanged_since(conn, before)
    for table, amount in (("products", "price"), ("policies", "price"), ("invoices", "amount")):
        mismatched = conn.execute(
            f"SELECT count(*) FROM {table} WHERE {amount}_currency <> 'BTC' "
            f"OR {amount}_minor <> {amount}_sats"
        ).fetchone()[0]
        assert mismatched == 0, table
        assert conn.execute(f"SELECT sum({amount}_minor) FROM {table}").fetchone()[0] > 0, table
    kit.assert_db_clean(conn)


def test_0010_run_twice_fails_and_changes_nothing(tmp_path):
    # Why 10 can never be on the allowlist: SQLite has no ADD COLUMN IF NOT EXISTS, so a
    # re-run fails on its first statement. Forced through the real re-run path here, the
    # migrator must roll back and leave the shop's data as it was.
    assert 10 not in IDEMPOTENT_MIGRATIONS
    db, conn = _database_at(tmp_path, 10)
    conn.execute("UPDATE _sqlx_migrations SET checksum = ? WHERE version = 10", (b"\xef" * 48,))
    before = kit.dump(conn)
    ledger_before = conn.execute("SELECT * FROM _sqlx_migrations ORDER BY version").fetchall()
    with pytest.raises(MigrationFailed, match="duplicate column name: price_currency"):
        kit.apply_range(db, upto=10, idempotent=frozenset({10}))
    assert kit.dump(conn) == before
    assert conn.execute("SELECT * FROM _sqlx_migrations ORDER BY version").fetchall() == (
        ledger_before
    )
    kit.assert_db_clean(conn)


def test_0011_one_invoice_per_provider_reference(tmp_path):
    db, conn = _database_at(tmp_path, 10)
    before = _snapshot(conn)
    kit.apply_range(db, upto=11)
    _unchanged_since(conn, before)
    kit.assert_db_clean(conn)
    invoice = conn.execute(
        "SELECT product_id, provider_invoice_id FROM invoices WHERE provider = 'btcpay' LIMIT 1"
    ).fetchone()
    counts = count_rows(conn)
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE constraint failed"):
        conn.execute(
            "INSERT INTO invoices (id, product_id, status, provider, provider_invoice_id, "
            "amount_sats, created_at) VALUES (?, ?, 'pending', 'btcpay', ?, 1000, 1)",
            (str(uuid.uuid4()), *invoice),
        )
    assert count_rows(conn) == counts


def test_0012_machine_state_index_keeps_every_machine(tmp_path):
    from daemon.licensing.store_machines import ACTIVE_SEATS_SQL, PURGE_HISTORY_SQL

    db, conn = _database_at(tmp_path, 11, scale=2)
    before = _snapshot(conn)
    assert conn.execute(
        "SELECT count(*) FROM machines WHERE deactivated_at IS NOT NULL"
    ).fetchone()[0]
    kit.apply_range(db, upto=12)
    _unchanged_since(conn, before)
    kit.assert_db_clean(conn)
    assert "machines_license_state_idx" in _indexes(conn, "machines")
    license_id = conn.execute("SELECT license_id FROM machines LIMIT 1").fetchone()[0]
    # The purge of one license's history and the seat count never scan the table.
    purge = _plan(conn, PURGE_HISTORY_SQL, license_id, 100)
    assert "machines_license_state_idx" in purge and "SCAN machines" not in purge, purge
    seats = _plan(conn, ACTIVE_SEATS_SQL, license_id)
    assert "COVERING INDEX machines_license_state_idx" in seats, seats


def test_0013_moves_durations_to_seconds_and_adds_keysat_terms(tmp_path):
    db, conn = _database_at(tmp_path, 12, scale=2)
    before = _snapshot(conn)
    days = dict(conn.execute("SELECT id, duration_days FROM policies").fetchall())
    assert any(days.values()) and None in days.values()
    kit.apply_range(db, upto=13)
    kit.assert_db_clean(conn)
    # Every value of every column that existed is unchanged, but the durations that moved.
    moved = {"policies": ("duration_days",)}
    for table, (columns, rows) in before.items():
        kept = [c for c in columns.split(", ") if c not in moved.get(table, ())]
        old = [tuple(r[columns.split(", ").index(c)] for c in kept) for r in rows]
        assert _rows(conn, table, ", ".join(kept)) == old, table
    seconds = {
        row[0]: row[1:]
        for row in conn.execute(
            "SELECT id, duration_days, duration_seconds, grace_seconds, unlimited_machines "
            "FROM policies"
        )
    }
    assert seconds == {
        policy_id: (None, None if d is None else d * 86_400, 0, 0) for policy_id, d in days.items()
    }
    assert conn.execute(
        "SELECT count(*) FROM licenses WHERE max_machines IS NOT NULL OR grace_seconds IS NOT "
        "NULL OR buyer_email IS NOT NULL OR suspend_reason IS NOT NULL"
    ).fetchone() == (0,)
    assert "licenses_buyer_email_idx" in _indexes(conn, "licenses")
    # The new checks hold: a negative grace or seat count is refused.
    for sql in (
        "UPDATE policies SET grace_seconds = -1",
        "UPDATE licenses SET max_machines = -1",
        "UPDATE policies SET unlimited_machines = 2",
    ):
        with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed"):
            conn.execute(sql)


def test_0013_down_restores_the_database_before_it_exactly(tmp_path):
    db, conn = _database_at(tmp_path, 12, scale=2)
    before = kit.dump(conn)
    kit.apply_range(db, upto=13)
    down = (kit.MIGRATIONS / "0013_keysat_terms.down.sql").read_text()
    conn.executescript(f"BEGIN;\n{down}\nCOMMIT;")
    assert kit.dump(conn) == before
    kit.assert_db_clean(conn)


def test_0014_adds_api_keys_and_webhooks_and_keeps_every_row(tmp_path):
    db, conn = _database_at(tmp_path, 13, scale=2)
    before = kit.dump(conn)
    kit.apply_range(db, upto=14)
    kit.assert_db_clean(conn)
    # Every schema line and row that was there is there still: 0014 only adds.
    after = set(kit.dump(conn).splitlines())
    assert [line for line in before.splitlines() if line not in after] == []
    # The checks hold: an unknown role or delivery status is refused.
    conn.execute(
        "INSERT INTO webhook_endpoints (id, url, event_types, secret, created_at) "
        "VALUES ('e', 'http://x', '[]', 's', 1)"
    )
    conn.execute(
        "INSERT INTO webhook_events (event_type, payload, created_at) VALUES ('t', '{}', 1)"
    )
    for sql in (
        "INSERT INTO api_keys (id, label, role, token_hash, token_prefix, created_at) "
        "VALUES ('k', 'l', 'root', 'h', 'p', 1)",
        "INSERT INTO webhook_deliveries (id, endpoint_id, event_id, status, next_attempt_at, "
        "created_at) VALUES ('d', 'e', 1, 'lost', 1, 1)",
    ):
        with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed"):
            conn.execute(sql)


def test_0014_down_restores_the_database_before_it_exactly(tmp_path):
    db, conn = _database_at(tmp_path, 13, scale=2)
    before = kit.dump(conn)
    kit.apply_range(db, upto=14)
    down = (kit.MIGRATIONS / "0014_api_keys_and_webhooks.down.sql").read_text()
    conn.executescript(f"BEGIN;\n{down}\nCOMMIT;")
    assert kit.dump(conn) == before
    kit.assert_db_clean(conn)


def test_0015_delivery_log_indexes_keep_every_row_and_serve_the_purge(tmp_path):
    from daemon.licensing.outbox import DELETE_UNUSED_EVENT_SQL, SETTLED_BEYOND_SQL

    db, conn = _database_at(tmp_path, 14, scale=2)
    before = kit.dump(conn)
    settled = conn.execute(
        "SELECT endpoint_id FROM webhook_deliveries WHERE status != 'pending' LIMIT 1"
    ).fetchone()
    assert settled is not None, "the seed has a settled delivery to purge"
    kit.apply_range(db, upto=15)
    kit.assert_db_clean(conn)
    # Every schema line and row that was there is there still: 0015 only adds indexes.
    after = set(kit.dump(conn).splitlines())
    assert [line for line in before.splitlines() if line not in after] == []
    # The purge reads one endpoint's settled deliveries and one event's, never the table.
    beyond = _plan(conn, SETTLED_BEYOND_SQL, settled[0], 1000)
    assert "webhook_deliveries_settled_idx" in beyond and "SCAN webhook_deliveries" not in beyond
    assert "TEMP B-TREE" not in beyond, beyond  # read in index order, not sorted afterwards
    unused = _plan(conn, DELETE_UNUSED_EVENT_SQL, 1)
    assert "webhook_deliveries_event_idx" in unused, unused


def test_0015_down_restores_the_database_before_it_exactly(tmp_path):
    db, conn = _database_at(tmp_path, 14, scale=2)
    before = kit.dump(conn)
    kit.apply_range(db, upto=15)
    down = (kit.MIGRATIONS / "0015_webhook_delivery_history.down.sql").read_text()
    conn.executescript(f"BEGIN;\n{down}\nCOMMIT;")
    assert kit.dump(conn) == before
    kit.assert_db_clean(conn)


def test_0016_code_terms_keep_every_row_and_codes_read_as_before(tmp_path):
    from daemon.licensing.store_sales import CODE_COLUMNS, CODE_FROM

    db, conn = _database_at(tmp_path, 15, scale=2)
    before = kit.dump(conn)
    stored = _rows(conn, "discount_codes", "id, kind, amount, policy_id")
    assert {kind for _, kind, _, _ in stored} >= {"percent", "fixed_sats", "set_price"}
    kit.apply_range(db, upto=16)
    kit.assert_db_clean(conn)
    # Every schema line and row that was there is there still: 0016 only adds a table.
    after = set(kit.dump(conn).splitlines())
    assert [line for line in before.splitlines() if line not in after] == []
    assert _rows(conn, "discount_code_terms") == []
    # A code without terms reads as it did (through today's columns, so at today's schema,
    # which adds no terms row): a percent's whole percent in basis points.
    kit.apply_range(db)
    read = conn.execute(
        "SELECT id, kind, amount, policy_id, referrer_label, policy_ids FROM "
        f"(SELECT c.rowid AS n, {CODE_COLUMNS} {CODE_FROM}) ORDER BY n"
    ).fetchall()
    assert read == [
        (id_, kind, amount * 100 if kind == "percent" else amount, policy_id, None, "[]")
        for id_, kind, amount, policy_id in stored
    ]


def test_0016_down_restores_the_database_before_it_exactly(tmp_path):
    db, conn = _database_at(tmp_path, 15, scale=2)
    before = kit.dump(conn)
    kit.apply_range(db, upto=16)
    down = (kit.MIGRATIONS / "0016_discount_code_terms.down.sql").read_text()
    conn.executescript(f"BEGIN;\n{down}\nCOMMIT;")
    assert kit.dump(conn) == before
    kit.assert_db_clean(conn)


def test_0016_down_disables_codes_whose_terms_the_older_version_would_misread(tmp_path):
    _, conn = _database_at(tmp_path, 16, scale=1)
    percent, several, labelled, *_ = (
        row[0]
        for row in conn.execute(
            "SELECT id FROM discount_codes WHERE disabled = 0 ORDER BY kind = 'percent' DESC, rowid"
        )
    )
    policies = [row[0] for row in conn.execute("SELECT id FROM policies LIMIT 2")]
    conn.execute(
        "DELETE FROM discount_code_terms WHERE code_id IN (?, ?, ?)", (percent, several, labelled)
    )
    conn.executemany(
        "INSERT INTO discount_code_terms (code_id, percent_bps, referrer_label, policy_ids) "
        "VALUES (?, ?, ?, ?)",
        [
            (percent, 1250, None, "[]"),
            (several, None, None, json.dumps(policies)),
            (labelled, None, "launch-twitter", "[]"),
        ],
    )
    conn.commit()
    down = (kit.MIGRATIONS / "0016_discount_code_terms.down.sql").read_text()
    conn.executescript(f"BEGIN;\n{down}\nCOMMIT;")
    kit.assert_db_clean(conn)
    disabled = dict(conn.execute("SELECT id, disabled FROM discount_codes"))
    assert (disabled[percent], disabled[several], disabled[labelled]) == (1, 1, 0)
    kept = {
        subject: json.loads(detail)
        for subject, detail in conn.execute(
            "SELECT subject, detail FROM audit_log WHERE action = 'migration.0016.down'"
        )
    }
    seeded_label = conn.execute(
        "SELECT count(*) FROM audit_log WHERE action = 'migration.0016.down' "
        "AND detail LIKE '%launch-newsletter%'"
    ).fetchone()[0]
    assert seeded_label >= 1  # the seed's labelled codes are recorded too
    assert kept[f"discount_code:{percent}"]["percent_bps"] == 1250
    assert kept[f"discount_code:{several}"]["policy_ids"] == policies
    assert kept[f"discount_code:{labelled}"] == {
        "percent_bps": None,
        "referrer_label": "launch-twitter",
        "policy_ids": [],
        "disabled": 0,
    }
    assert "discount_code_terms" not in kit.dump(conn)


def test_0017_policy_metadata_keeps_every_policy_with_an_empty_object(tmp_path):
    db, conn = _database_at(tmp_path, 16, scale=2)
    before = _rows(conn, "policies")
    kit.apply_range(db, upto=17)
    kit.assert_db_clean(conn)
    assert _columns(conn, "policies")[-1] == "metadata"
    assert [row[:-1] for row in _rows(conn, "policies")] == before
    assert {row[-1] for row in _rows(conn, "policies")} == {"{}"}
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("UPDATE policies SET metadata = '[1]' WHERE rowid = 1")


def test_0017_down_restores_the_database_before_it_and_keeps_metadata_in_the_audit_log(
    tmp_path,
):
    db, conn = _database_at(tmp_path, 16, scale=2)
    before = kit.dump(conn)
    kit.apply_range(db, upto=17)
    down = (kit.MIGRATIONS / "0017_policy_metadata.down.sql").read_text()
    # Untouched metadata: the down gives back exactly the database 0016 knew.
    conn.executescript(f"BEGIN;\n{down}\nCOMMIT;")
    assert kit.dump(conn) == before
    kit.assert_db_clean(conn)
    # Metadata a seller wrote is kept in one audit row per policy.
    _, conn2 = _database_at(tmp_path / "seeded", 17, scale=1)
    written = dict(conn2.execute("SELECT id, metadata FROM policies WHERE metadata <> '{}'"))
    assert written, "the seed writes metadata at 17"
    conn2.executescript(f"BEGIN;\n{down}\nCOMMIT;")
    kit.assert_db_clean(conn2)
    kept = {
        subject.removeprefix("policy:"): json.loads(detail)["metadata"]
        for subject, detail in conn2.execute(
            "SELECT subject, detail FROM audit_log WHERE action = 'migration.0017.down'"
        )
    }
    assert kept == {policy_id: json.loads(meta) for policy_id, meta in written.items()}
    assert "metadata" not in _columns(conn2, "policies")


def _audited(conn: sqlite3.Connection, at: int, action: str, subject: str, detail: dict) -> None:
    conn.execute(
        "INSERT INTO audit_log (created_at, actor, action, subject, detail) "
        "VALUES (?, 'admin', ?, ?, ?)",
        (at, action, subject, json.dumps(detail)),
    )


def _priced_shop(conn: sqlite3.Connection) -> dict[str, str]:
    """Four policies at 0017, one per case 0018 tells apart; returns case -> policy id."""
    ids = {}
    for n, (case, product_price, policy_price) in enumerate(
        (("copied", 5000, 5000), ("edited", 5000, 5000), ("created", 5000, 900), ("stale", 5000, 0))
    ):
        product, policy = str(uuid.uuid4()), str(uuid.uuid4())
        conn.execute(
            "INSERT INTO products (id, slug, name, price_sats, price_minor, created_at, "
            "updated_at) VALUES (?, ?, 'P', ?, ?, 100, 100)",
            (product, f"priced-{n}", product_price, product_price),
        )
        conn.execute(
            "INSERT INTO policies (id, product_id, slug, name, price_sats, price_minor, "
            "created_at) VALUES (?, ?, 'default', 'D', ?, ?, 200)",
            (policy, product, policy_price, policy_price),
        )
        edits = {
            "edited": ("policy.update", f"policy:{policy}", 300),
            "stale": ("product.update", f"product:{product}", 300),
            # A product edit before the policy existed cannot explain the policy's price.
            "created": ("product.update", f"product:{product}", 150),
        }
        if case in edits:
            action, subject, at = edits[case]
            _audited(conn, at, action, subject, {"fields": ["name", "price_sats"]})
        ids[case] = policy
    conn.commit()
    return ids


def test_0018_a_copied_price_follows_the_product_and_a_set_one_is_kept(tmp_path):
    db, conn = _database_at(tmp_path, 17, scale=2)
    ids = _priced_shop(conn)
    before = _rows(conn, "policies")
    kit.apply_range(db, upto=18)
    kit.assert_db_clean(conn)
    assert [row[:-1] for row in _rows(conn, "policies")] == before  # no price changed
    follows = dict(conn.execute("SELECT id, price_follows_product FROM policies"))
    assert {case: follows[policy] for case, policy in ids.items()} == {
        "copied": 1,
        "edited": 0,
        "created": 0,
        "stale": 0,
    }
    # The one policy nothing can decide is named in the audit log with both prices.
    kept = [
        (subject, json.loads(detail))
        for subject, detail in conn.execute(
            "SELECT subject, detail FROM audit_log WHERE action = 'migration.0018.up'"
        )
    ]
    stale = [(s, d) for s, d in kept if s == f"policy:{ids['stale']}"]
    assert [d["kept_price_sats"] for _, d in stale] == [0]
    assert [d["product_price_sats"] for _, d in stale] == [5000]
    assert not {f"policy:{ids[c]}" for c in ("copied", "edited", "created")} & {s for s, _ in kept}
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("UPDATE policies SET price_follows_product = 2 WHERE rowid = 1")


def test_0018_down_gives_each_following_policy_its_products_price(tmp_path):
    down = (kit.MIGRATIONS / "0018_policy_price_follows_product.down.sql").read_text()
    # Nothing repriced since: the down gives back exactly the database 0017 knew (but for the
    # up's audit rows, which stay: they are the seller's record).
    db, conn = _database_at(tmp_path, 17, scale=2)
    before = kit.dump(conn)
    kit.apply_range(db, upto=18)
    conn.execute("DELETE FROM audit_log WHERE action = 'migration.0018.up'")
    conn.executescript(f"BEGIN;\n{down}\nCOMMIT;")
    assert kit.dump(conn) == before
    # A product repriced at 18: its following policy keeps that price in the older schema.
    db, conn = _database_at(tmp_path / "repriced", 17)
    ids = _priced_shop(conn)
    kit.apply_range(db, upto=18)
    conn.execute(
        "UPDATE products SET price_sats = 7000, price_minor = 7000 WHERE id = "
        "(SELECT product_id FROM policies WHERE id = ?)",
        (ids["copied"],),
    )
    conn.executescript(f"BEGIN;\n{down}\nCOMMIT;")
    kit.assert_db_clean(conn)
    assert "price_follows_product" not in _columns(conn, "policies")
    prices = dict(conn.execute("SELECT id, price_sats FROM policies"))
    assert [prices[ids[c]] for c in ("copied", "edited", "created", "stale")] == [
        7000,
        5000,
        900,
        0,
    ]


def _0019_shop(conn: sqlite3.Connection) -> dict[str, str]:
    """At 18: a policy edited then archived, one never edited, a code edited, a license."""
    ids = {name: str(uuid.uuid4()) for name in ("product", "archived", "plain", "code")}
    conn.execute(
        "INSERT INTO products (id, slug, name, price_sats, created_at, updated_at) "
        "VALUES (?, 'p19', 'P', 0, 100, 100)",
        (ids["product"],),
    )
    for name, active in (("archived", 0), ("plain", 1)):
        conn.execute(
            "INSERT INTO policies (id, product_id, slug, name, created_at, active) "
            "VALUES (?, ?, ?, 'P', 200, ?)",
            (ids[name], ids["product"], name, active),
        )
    conn.execute(
        "INSERT INTO discount_codes (id, code, kind, amount, created_at) "
        "VALUES (?, 'C19', 'fixed_sats', 5, 300)",
        (ids["code"],),
    )
    conn.execute(
        "INSERT INTO discount_code_terms (code_id, policy_ids) VALUES (?, '[]')", (ids["code"],)
    )
    _audited(conn, 400, "policy.update", f"policy:{ids['archived']}", {})
    _audited(conn, 500, "discount_code.update", f"discount_code:{ids['code']}", {})
    conn.commit()
    return ids


def test_0019_backfills_times_from_the_audit_log_and_takes_merchant_onboard_keys(tmp_path):
    db, conn = _database_at(tmp_path, 18, scale=2)
    ids = _0019_shop(conn)
    keys_before = _rows(conn, "api_keys")
    licenses_before = _rows(conn, "licenses")
    kit.apply_range(db, upto=19)
    kit.assert_db_clean(conn)
    times = {
        row[0]: row[1:] for row in conn.execute("SELECT id, updated_at, archived_at FROM policies")
    }
    assert times[ids["archived"]] == (400, 400)  # its last audited change
    assert times[ids["plain"]] == (200, None)  # never edited: its creation
    [code_time] = conn.execute(
        "SELECT updated_at FROM discount_code_terms WHERE code_id = ?", (ids["code"],)
    ).fetchall()
    assert code_time == (500,)
    # Every key and license kept, with nothing new set.
    assert [row[:-1] for row in _rows(conn, "api_keys")] == keys_before
    assert {row[-1] for row in _rows(conn, "api_keys")} <= {None}
    assert [row[:-4] for row in _rows(conn, "licenses")] == licenses_before
    assert {row[-4:] for row in _rows(conn, "licenses")} <= {(None, None, "{}", None)}
    conn.execute(
        "INSERT INTO api_keys (id, label, role, token_hash, token_prefix, created_at) "
        "VALUES ('m', 'onboarding', 'merchant-onboard', 'h19', 'ks_x', 1)"
    )
    with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed"):
        conn.execute("UPDATE licenses SET metadata = '[]' WHERE rowid = 1")


def test_0019_down_restores_the_database_before_it_and_keeps_license_fields_in_the_audit_log(
    tmp_path,
):
    down = (kit.MIGRATIONS / "0019_keysat_record_fields.down.sql").read_text()
    db, conn = _database_at(tmp_path, 18, scale=2)
    before = kit.dump(conn)
    kit.apply_range(db, upto=19)
    conn.executescript(f"BEGIN;\n{down}\nCOMMIT;")
    assert kit.dump(conn) == before
    kit.assert_db_clean(conn)
    # Written at 19: a license's Keysat fields are kept in the audit log, a merchant-onboard
    # key is named there and deleted, the other keys stay.
    db, conn = _database_at(tmp_path / "written", 18, scale=1)
    kit.apply_range(db, upto=19)
    license_id = conn.execute("SELECT id FROM licenses LIMIT 1").fetchone()[0]
    conn.execute(
        "UPDATE licenses SET fingerprint = 'fp', nostr_npub = 'npub1x', "
        'metadata = \'{"source":"admin_issue"}\' WHERE id = ?',
        (license_id,),
    )
    conn.execute(
        "INSERT INTO api_keys (id, label, role, token_hash, token_prefix, created_at) "
        "VALUES ('m', 'onboarding', 'merchant-onboard', 'h19', 'ks_x', 1)"
    )
    others = conn.execute("SELECT id FROM api_keys WHERE id <> 'm' ORDER BY id").fetchall()
    conn.commit()
    conn.executescript(f"BEGIN;\n{down}\nCOMMIT;")
    kit.assert_db_clean(conn)
    kept = dict(
        conn.execute(
            "SELECT subject, detail FROM audit_log WHERE action = 'migration.0019.down'"
        ).fetchall()
    )
    assert json.loads(kept[f"license:{license_id}"]) == {
        "fingerprint": "fp",
        "bound_identity": None,
        "metadata": {"source": "admin_issue"},
        "nostr_npub": "npub1x",
    }
    assert json.loads(kept["api_key:m"])["role"] == "merchant-onboard"
    assert conn.execute("SELECT id FROM api_keys ORDER BY id").fetchall() == others


def test_every_migration_has_a_test_here():
    # A new migration without its test here fails this, on purpose.
    names = {p.name[:4] for p in kit.MIGRATIONS.glob("[0-9]*_*.sql")}
    source = Path(__file__).read_text()
    untested = sorted(n for n in names if f"def test_{n}_" not in source)
    assert untested == []


# ---------------------------------------------------------------- the seed itself


@pytest.mark.parametrize("version", range(1, LATEST + 1))
def test_seed_fills_every_table_of_the_schema_at_each_version(tmp_path, version):
    db = tmp_path / "keysmith.db"
    kit.apply_range(db, upto=version)
    conn = kit.connect(db)
    inserted = seed(conn, version)
    assert count_rows(conn) == inserted
    assert all(n > 0 for n in inserted.values()), inserted
    kit.assert_db_clean(conn)


def test_seed_is_reproducible_and_scales(tmp_path):
    now = int(time.time())
    dumps, totals = [], []
    for name, scale in (("a", 1), ("b", 1), ("c", 3)):
        db = tmp_path / f"{name}.db"
        kit.apply_range(db)
        conn = kit.connect(db)
        totals.append(seed(conn, LATEST, scale, now=now))
        dumps.append(kit.dump(conn))
    assert dumps[0] == dumps[1]
    assert totals[2]["licenses"] == 3 * totals[0]["licenses"]
    # Keys and settings are per shop, not per unit of scale.
    assert totals[2]["issuer_keys"] == totals[0]["issuer_keys"] == 2


def test_seed_refuses_a_database_older_than_asked_and_writes_nothing(tmp_path):
    db = tmp_path / "keysmith.db"
    kit.apply_range(db, upto=2)
    conn = kit.connect(db)
    with pytest.raises(ValueError, match=r"not at schema version 5: missing \['policies'"):
        seed(conn, 5)
    assert set(count_rows(conn).values()) == {0}


def test_seed_in_chunks_writes_the_same_shop(tmp_path, monkeypatch):
    # Large scales are inserted in chunks of units to keep memory flat; chunking must not
    # change a single row (nor break the parents-before-children order).
    now = int(time.time())
    dumps = []
    for name, units_per_chunk in (("whole", 250), ("chunked", 1)):
        monkeypatch.setattr("tests.seed.UNITS_PER_CHUNK", units_per_chunk)
        db = tmp_path / f"{name}.db"
        kit.apply_range(db)
        conn = kit.connect(db)
        seed(conn, LATEST, 3, now=now)
        kit.assert_db_clean(conn)
        dumps.append(kit.dump(conn))
    assert dumps[0] == dumps[1]


# The schema 0020 follows (0019 once the contract's fields are merged, 0018 without them).
_BEFORE_0020 = max(
    int(p.name[:4]) for p in kit.MIGRATIONS.glob("[0-9]*_*.sql") if int(p.name[:4]) < 20
)


def test_0020_list_count_indexes_keep_every_row_and_answer_the_console_lists(tmp_path):
    db, conn = _database_at(tmp_path, _BEFORE_0020, scale=2)
    before = _snapshot(conn)
    kit.apply_range(db, upto=20)
    _unchanged_since(conn, before)
    kit.assert_db_clean(conn)
    # The counts and pages the console asks for, each on its index (store.count_audit,
    # store_machines.list_machines, store.count_licenses).
    by_action = _plan(conn, "SELECT count(*) FROM audit_log AS a WHERE a.action = ?", "x")
    assert "audit_log_action_idx" in by_action, by_action
    by_actor = _plan(
        conn,
        "SELECT count(*) FROM audit_log AS a WHERE (a.actor = ? OR (a.actor > ? AND a.actor < ?))",
        "api_key",
        "api_key:",
        "api_key;",
    )
    assert "audit_log_actor_idx" in by_actor and "SCAN" not in by_actor, by_actor
    seen = _plan(conn, "SELECT id FROM machines AS m ORDER BY m.last_seen_at DESC, m.id LIMIT 200")
    assert "machines_seen_idx" in seen, seen
    status = _plan(conn, "SELECT count(*) FROM licenses AS l WHERE l.status = ?", "revoked")
    assert "licenses_status_idx" in status, status


def test_0020_down_restores_the_database_before_it_exactly(tmp_path):
    db, conn = _database_at(tmp_path, _BEFORE_0020, scale=2)
    before = kit.dump(conn)
    kit.apply_range(db, upto=20)
    down = (kit.MIGRATIONS / "0020_list_count_indexes.down.sql").read_text()
    conn.executescript(f"BEGIN;\n{down}\nCOMMIT;")
    assert kit.dump(conn) == before
    kit.assert_db_clean(conn)
