"""Moving a Keysat shop here (`python -m daemon import-keysat`): a real Keysat database (its
own migrations by the real sqlx-cli, rows through its schema, keys signed as Keysat signs
them), imported into a real Keysmith database, then the real daemon answering every key as
Keysat did, through the published client. Every refusal leaves Keysmith's database as it was.

Each test runs on two builds of the Keysat database: "sqlx" (Keysat's migration files from
the mirror, KEYSAT_REPO_GIT; skipped where it is absent) and "described" (the committed
tests/data/keysat_schema.json, so CI runs them). Tests below check the two builds agree.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from keysat_licensing_client import Client, PublicKey, Verifier

from daemon.keysat_import.columns import IMPORTED
from daemon.keysat_import.source import read as read_keysat
from tests import kit
from tests.daemon_proc import DaemonProc, base_env
from tests.keysat_schema import (
    DESCRIPTION,
    OLDEST,
    SOURCES,
    VERSIONS,
    Source,
    describe,
    extract,
    make,
    render,
    schema,
    unavailable,
)
from tests.keysat_shop import (
    DAY,
    MACHINES,
    NPUB,
    build_shop,
    copy_shop,
    insert_issuer,
    keysat_key,
    new_id,
    rfc3339,
)
from tests.test_api_support import admin, issue, make_product, must
from tests.ts_client import build_client, call, drive, needs_node, value

needs_sqlx = pytest.mark.skipif(bool(unavailable("sqlx")), reason=str(unavailable("sqlx")))


@pytest.fixture(scope="module", params=SOURCES)
def keysat_source(request) -> Source:
    """Each test on a Keysat database from both sources: the real migrations where the
    mirror is, the committed description everywhere (CI)."""
    reason = unavailable(request.param)
    if reason:
        pytest.skip(reason)
    return request.param


@pytest.fixture(scope="module")
def keysat(tmp_path_factory, keysat_source):
    folder = tmp_path_factory.mktemp(f"keysat-{keysat_source}")
    return build_shop(folder, int(time.time()), keysat_source)


@needs_sqlx
def test_the_committed_keysat_description_is_what_sqlx_makes_of_keysats_migrations():
    assert render(describe()) == DESCRIPTION.read_text(), (
        f"{DESCRIPTION} is stale: run `python -m tests.keysat_schema extract`"
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_a_described_keysat_database_has_exactly_the_described_schema_and_ledger(tmp_path, version):
    db = tmp_path / "keysat.db"
    make(db, "described", version)
    assert extract(db) == schema(version)


@needs_sqlx
@pytest.mark.parametrize("version", VERSIONS)
def test_the_import_reads_a_sqlx_and_a_described_keysat_database_alike(tmp_path, version):
    built = {s: tmp_path / s / "keysat.db" for s in SOURCES}
    for s, db in built.items():
        make(db, s, version)
    real, described = (extract(db) for db in built.values())
    assert real == described
    assert read_keysat(built["sqlx"]) == read_keysat(built["described"]) == (version, {
        table: [] for table in IMPORTED if table in described["tables"]
    })  # fmt: skip


def import_keysat(db: Path, source: Path) -> subprocess.CompletedProcess[str]:
    env = base_env({"KEYSMITH_DB_PATH": str(db)})
    return subprocess.run(
        [sys.executable, "-m", "daemon", "import-keysat", str(source)],
        env=env, cwd=db.parent, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def dump(db: Path) -> str:
    with closing(sqlite3.connect(db)) as conn:
        return kit.dump(conn)


@pytest.fixture(scope="module")
def started_once(tmp_path_factory):
    """A Keysmith that has started once (its own issuer key and admin key) and stopped."""
    folder = tmp_path_factory.mktemp("keysmith")
    with DaemonProc(folder) as daemon:
        assert daemon.status()["state"] == "serving", daemon.log_text()
    return daemon.db_path


def fresh_keysmith(started_once: Path, tmp_path: Path) -> Path:
    db = tmp_path / "data" / "keysmith.db"
    db.parent.mkdir(parents=True)
    for suffix in ("", "-wal"):
        if Path(f"{started_once}{suffix}").exists():
            shutil.copyfile(f"{started_once}{suffix}", f"{db}{suffix}")
    return db


def test_every_keysat_key_answers_on_keysmith_as_it_did_on_keysat(keysat, tmp_path, started_once):
    db = fresh_keysmith(started_once, tmp_path)
    done = import_keysat(db, keysat.path)
    assert done.returncode == 0, done.stderr
    assert "licenses: 7" in done.stdout
    with DaemonProc(tmp_path, db_path=db) as daemon:
        client = Client(daemon.url, timeout=10)
        served = client.fetch_pubkey_pem()
        assert served.strip() == keysat.public_pem().strip()
        verifier = Verifier(PublicKey.from_pem(served))
        answers = {}
        for name, seeded in keysat.licenses.items():
            assert str(verifier.verify(seeded.key).license_id) == seeded.id
            got = client.validate(seeded.key, product_slug=keysat.product_slug)
            answers[name] = (got.ok, got.reason, bool(got.in_grace_period))
        expected = {n: (s.ok, s.reason, s.in_grace) for n, s in keysat.licenses.items()}
        assert answers == expected
        # The two seats of "valid" are the two machines Keysat had: a third is refused.
        valid = keysat.licenses["valid"].key
        for fingerprint in MACHINES:
            assert client.validate(valid, fingerprint=fingerprint).ok
        third = client.validate(valid, fingerprint="third-machine")
        assert (third.ok, third.reason) == (False, "too_many_machines")


client_js = pytest.fixture(scope="module", name="client_js")(build_client)


@needs_node
def test_every_keysat_key_answers_keysats_typescript_client_as_on_keysat(
    keysat, tmp_path, started_once, client_js
):
    """The same keys through Keysat's other published client, the TypeScript one."""
    db = fresh_keysmith(started_once, tmp_path)
    assert import_keysat(db, keysat.path).returncode == 0
    names = list(keysat.licenses)
    with DaemonProc(tmp_path, db_path=db) as daemon:
        pem, *answers = drive(
            daemon,
            client_js,
            call("fetchPubkeyPem"),
            *(call("validate", keysat.licenses[n].key, keysat.product_slug) for n in names),
        )
    assert value(pem).strip() == keysat.public_pem().strip()
    got = {n: value(a) for n, a in zip(names, answers, strict=True)}
    assert {
        n: (g["ok"], g.get("reason"), bool(g.get("inGracePeriod"))) for n, g in got.items()
    } == {n: (s.ok, s.reason, s.in_grace) for n, s in keysat.licenses.items()}


def test_the_stored_keys_are_keysats_strings_byte_for_byte(keysat, tmp_path, started_once):
    db = fresh_keysmith(started_once, tmp_path)
    assert import_keysat(db, keysat.path).returncode == 0
    with closing(sqlite3.connect(db)) as conn:
        stored = dict(conn.execute("SELECT id, license_key FROM licenses"))
    assert stored == {s.id: s.key for s in keysat.licenses.values()}


def test_the_shop_arrives_with_its_terms_sales_codes_and_history(keysat, tmp_path, started_once):
    db = fresh_keysmith(started_once, tmp_path)
    assert import_keysat(db, keysat.path).returncode == 0
    with closing(sqlite3.connect(db)) as conn:
        q = conn.execute
        revoked, suspended = keysat.licenses["revoked"].id, keysat.licenses["suspended"].id
        assert q("SELECT revoke_reason FROM licenses WHERE id = ?", (revoked,)).fetchone() == (
            "chargeback",
        )
        assert q(
            "SELECT suspend_reason, buyer_email, grace_seconds, max_machines, note FROM licenses "
            "WHERE id = ?",
            (suspended,),
        ).fetchone() == ("fraud review", "suspended@example.com", 7 * 86400, 2, "suspended seat")
        metadata, npub = q(
            "SELECT metadata, nostr_npub FROM licenses WHERE id = ?", (suspended,)
        ).fetchone()
        assert (json.loads(metadata), npub) == (
            {"source": "admin_issue", "note": "suspended seat"},
            NPUB,
        )
        tiers = dict(
            (slug, rest)
            for slug, *rest in q(
                "SELECT slug, duration_seconds, unlimited_machines, price_follows_product, "
                "price_sats, active, highlighted, description FROM policies"
            )
        )
        assert tiers == {
            "annual": [365 * 86400, 0, 1, 5000, 1, 1, "For teams"],
            "trial": [14 * 86400, 0, 0, 0, 1, 0, ""],
            "forever": [None, 1, 0, 20000, 1, 0, ""],
            "legacy": [30 * 86400, 0, 0, 100, 0, 0, ""],
        }
        machines = q("SELECT count(*), count(deactivated_at) FROM machines").fetchone()
        assert machines == (2, 0)
        terms = q(
            "SELECT c.code, c.amount, t.percent_bps, t.referrer_label, t.policy_ids, c.disabled "
            "FROM discount_codes AS c JOIN discount_code_terms AS t ON t.code_id = c.id "
            "ORDER BY c.code"
        ).fetchall()
        scope = json.dumps([keysat.policies["annual"], keysat.policies["forever"]])
        assert terms == [
            ("FREEBIE", 0, None, None, "[]", 1),
            ("LAUNCH25", 25, 2500, "twitter", scope, 0),
        ]
        sales = q(
            "SELECT provider, status, license_id IS NOT NULL, discount_sats FROM invoices "
            "ORDER BY provider, status"
        ).fetchall()
        assert sales == [("btcpay", "expired", 0, 0), ("btcpay", "settled", 1, 1250),
                         ("free", "settled", 1, 0)]  # fmt: skip
        assert q("SELECT count(*) FROM discount_redemptions").fetchone() == (2,)
        audit = q("SELECT actor, action, subject, detail FROM audit_log ORDER BY id").fetchall()
        assert ("admin", "license.revoke", f"license:{revoked}") == audit[-3][:3]
        assert json.loads(audit[-3][3])["keysat"]["actor_hash"] == "ab" * 32
        assert audit[-1][1] == "keysat.import"
        assert q("SELECT value FROM settings WHERE key = 'operator_name'").fetchone() == (
            "Acme Tools",
        )
        keys = q("SELECT active, retired_at IS NOT NULL FROM issuer_keys ORDER BY id").fetchall()
        assert keys == [(0, 1), (1, 0)]


def test_a_keysat_database_at_migration_3_is_read_with_the_defaults_of_its_time(
    tmp_path, started_once, keysat_source
):
    """The oldest schema the import reads: no currencies, codes, archive or catalogue yet."""
    old = tmp_path / "old" / "keysat.db"
    make(old, keysat_source, OLDEST)
    private, now = Ed25519PrivateKey.generate(), int(time.time())
    product, policy, license_id = new_id(), new_id(), new_id()
    with closing(sqlite3.connect(old)) as conn, conn:
        insert_issuer(conn, private, now - 9 * DAY)
        conn.execute(
            "INSERT INTO products (id, slug, name, price_sats, created_at, updated_at) "
            "VALUES (?, 'old-app', 'Old App', 900, ?, ?)",
            (product, rfc3339(now), rfc3339(now)),
        )
        conn.execute(
            "INSERT INTO policies (id, product_id, name, slug, duration_seconds, created_at, "
            "updated_at) VALUES (?, ?, 'Month', 'month', ?, ?, ?)",
            (policy, product, 30 * DAY, rfc3339(now), rfc3339(now)),
        )
        conn.execute(
            "INSERT INTO licenses (id, product_id, status, issued_at, policy_id, expires_at, "
            "entitlements_json) VALUES (?, ?, 'active', ?, ?, ?, '[\"pro\"]')",
            (license_id, product, rfc3339(now - DAY), policy, rfc3339(now + 29 * DAY)),
        )
    key = keysat_key(private, product, license_id, now - DAY, now + 29 * DAY, ["pro"], False)
    db = fresh_keysmith(started_once, tmp_path)
    done = import_keysat(db, old)
    assert done.returncode == 0, done.stderr
    assert "Keysat schema 3" in done.stdout
    with DaemonProc(tmp_path, db_path=db) as daemon:
        answer = Client(daemon.url, timeout=10).validate(key, product_slug="old-app")
        assert (answer.ok, answer.entitlements, answer.max_machines) == (True, ["pro"], 1)
    with closing(sqlite3.connect(db)) as conn:
        prices = conn.execute("SELECT price_currency, price_minor FROM products").fetchone()
    assert prices == ("BTC", 900)


def keysat_copy(keysat, tmp_path: Path, sql: str = "", *params) -> Path:
    copy = copy_shop(keysat, tmp_path / "changed" / "keysat.db")
    if sql:
        with closing(sqlite3.connect(copy)) as conn, conn:
            conn.execute(sql, params)
    return copy


REFUSALS = {
    "newer_keysat": (
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, "
        "execution_time) VALUES (26, 'future', 1, x'00', 1)",
        "Keysat migration 26 ('future'), which this Keysmith does not know",
    ),
    "checksum_drift": (
        "UPDATE _sqlx_migrations SET checksum = zeroblob(48) WHERE version = 9",
        "Keysat migration 9 ('discount codes set price') has a checksum no released",
    ),
    "unknown_column": (
        "ALTER TABLE licenses ADD COLUMN seat_color TEXT",
        "the table licenses has columns Keysat 0.2.0:63 does not have: seat_color",
    ),
    "unknown_table": ("CREATE TABLE loyalty (id TEXT)", "tables Keysat 0.2.0:63 does not have"),
    "unknown_status": (
        "UPDATE licenses SET status = 'frozen' WHERE rowid = 1",
        "column status is not one of active, revoked, suspended (value 'frozen')",
    ),
    "bad_date": (
        "UPDATE licenses SET issued_at = 'yesterday' WHERE rowid = 1",
        "column issued_at is not a date and time",
    ),
    "dangling_machine": (
        "UPDATE machines SET license_id = 'no-such-license' WHERE rowid = 1",
        "names a missing licenses row",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_a_keysat_database_it_does_not_understand_is_refused_with_nothing_written(
    keysat, started_once, tmp_path, case
):
    sql, named = REFUSALS[case]
    db = fresh_keysmith(started_once, tmp_path)
    before = dump(db)
    done = import_keysat(db, keysat_copy(keysat, tmp_path, sql))
    assert done.returncode == 2, done.stdout + done.stderr
    assert named in done.stderr
    assert "Nothing was written" in done.stderr
    assert dump(db) == before


def test_a_file_that_is_not_keysat_is_refused_with_nothing_written(tmp_path, started_once):
    db = fresh_keysmith(started_once, tmp_path)
    before = dump(db)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    done = import_keysat(db, text)
    assert done.returncode == 2 and "is not a SQLite database" in done.stderr
    # A Keysmith database is SQLite with an sqlx ledger, but not Keysat's.
    other = fresh_keysmith(started_once, tmp_path / "other")
    done = import_keysat(db, other)
    assert done.returncode == 2 and "is not a Keysat database" in done.stderr
    assert dump(db) == before


def test_a_keysmith_that_issued_licenses_is_not_overwritten(keysat, tmp_path):
    with DaemonProc(tmp_path) as daemon:
        issue(daemon, make_product(daemon))
    before = dump(daemon.db_path)
    done = import_keysat(daemon.db_path, keysat.path)
    assert done.returncode == 2
    assert "already issued 1 license(s)" in done.stderr
    assert dump(daemon.db_path) == before


def test_the_import_is_refused_while_the_daemon_serves_the_database(keysat, tmp_path):
    with DaemonProc(tmp_path) as daemon:
        before = dump(daemon.db_path)
        done = import_keysat(daemon.db_path, keysat.path)
        assert done.returncode == 2
        assert "is open in another process" in done.stderr
        assert dump(daemon.db_path) == before
        must(admin(daemon, "GET", "/v1/admin/licenses"), 200)


def test_the_startos_action_imports_a_file_from_the_data_volume(keysat, tmp_path, started_once):
    db = fresh_keysmith(started_once, tmp_path)
    copy_shop(keysat, db.parent / "keysat-import" / "keysat.db")
    env = base_env({"KEYSMITH_DB_PATH": str(db)})

    def action(form: dict) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "daemon", "action", "import-keysat", json.dumps(form)]
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)

    outside = action({"file": "../../etc/passwd"})
    assert outside.returncode == 1 and "inside the data volume" in outside.stderr
    done = action({})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["title"] == "Keysat shop imported"
    assert "licenses: 7" in result["result"]["value"]
    again = action({})
    assert again.returncode == 1 and "already issued 7 license(s)" in again.stderr
