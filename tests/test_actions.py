"""`python -m daemon action`: the catalogue, the version "1" results, and bad input.

Every action runs as StartOS runs it: its own process, the data folder's database, the real
licensing service. Bad input must give one clear message naming the field, exit 1, and leave
the database exactly as it was (a dump before and after).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from daemon.actions import ACTIONS, catalogue_json
from daemon.migrate.lock import UsersLock
from tests.daemon_proc import base_env
from tests.kit import MIGRATIONS, apply_range, connect, dump
from tests.seed import seed

REPO = Path(__file__).resolve().parent.parent
LATEST = max(int(path.name[:4]) for path in MIGRATIONS.glob("*.sql"))
ADMIN_KEY = "action-test-admin-key-0123456789"
NO_INPUT = [entry["id"] for entry in json.loads(catalogue_json()) if entry["input"] is None]
SINGLE_KEYS = {"type", "value", "copyable", "qr", "masked"}


def action(
    data: Path, *args: str, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    settings = {
        "KEYSMITH_DB_PATH": str(data / "keysmith.db"),
        "KEYSMITH_MIGRATIONS_DIR": str(MIGRATIONS),
        "KEYSMITH_ADMIN_API_KEY": ADMIN_KEY,
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "daemon", "action", *args], input=stdin, capture_output=True,
        text=True, env=base_env(settings), cwd=REPO, timeout=120, check=False,
    )  # fmt: skip


def result(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The version "1" result, checked against the shape StartOS 0.4 reads."""
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert set(out) == {"version", "title", "message", "result"} and out["version"] == "1"
    assert isinstance(out["title"], str) and out["title"]
    assert out["message"] is None or isinstance(out["message"], str)
    shown = out["result"]
    if shown is not None and shown["type"] == "single":
        assert set(shown) == SINGLE_KEYS and isinstance(shown["value"], str)
    elif shown is not None:
        assert shown["type"] == "group" and set(shown) == {"type", "value"}
        for member in shown["value"]:
            assert set(member) == SINGLE_KEYS | {"name", "description"}, member
            assert isinstance(member["value"], str) and member["name"]
    return out


def refused(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, done.stdout
    assert done.stdout == ""
    assert "Traceback" not in done.stderr and done.stderr.strip()
    return done.stderr


def db_dump(data: Path) -> str:
    with closing(connect(data / "keysmith.db")) as conn:
        return dump(conn, include_ledger=True)


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """A data folder at the current schema with realistic rows, and a pre-upgrade backup."""
    data = tmp_path / "data"
    data.mkdir()
    apply_range(data / "keysmith.db", upto=LATEST - 1)
    apply_range(data / "keysmith.db")  # an upgrade that runs SQL leaves a backup
    with closing(connect(data / "keysmith.db")) as conn:
        seed(conn, LATEST)
    return data


# ---- the catalogue ------------------------------------------------------------------------


def test_the_committed_catalogue_is_what_the_daemon_declares():
    committed = (REPO / "startos" / "actions.json").read_text()
    assert committed == catalogue_json(), "run `make actions-catalogue` and commit the result"
    done = subprocess.run(
        [sys.executable, "-m", "daemon", "action", "--catalogue"], capture_output=True,
        text=True, env=base_env(), cwd=REPO, check=True,
    )  # fmt: skip
    assert done.stdout == committed


def test_the_catalogue_declares_every_action_and_form_field_completely():
    entries = json.loads(catalogue_json())
    assert [e["id"] for e in entries] == list(ACTIONS)
    for entry in entries:
        assert entry["allowedStatuses"] in ("any", "only-running", "only-stopped")
        assert entry["name"] and entry["description"] and entry["visibility"] == "enabled"
        for field in entry["input"] or []:
            assert field["kind"] in ("text", "textarea", "number", "toggle", "select")
            if field["kind"] == "select":
                assert field["default"] in field["choices"], field
            if field["kind"] == "toggle":
                assert isinstance(field["default"], bool), field
            if field["kind"] == "number" and field["default"] is not None:
                assert field["min"] <= field["default"] <= field["max"], field
    by_id = {e["id"]: e for e in entries}
    assert by_id["restore-backup"]["allowedStatuses"] == "only-stopped"
    assert by_id["restore-backup"]["warning"]


# ---- no input: `null` as StartOS 0.4's legacy adapter appends it --------------------------


@pytest.mark.parametrize("legacy", [False, True], ids=["v1", "legacy"])
@pytest.mark.parametrize("action_id", NO_INPUT)
def test_every_action_without_input_accepts_a_trailing_null(shop, action_id, legacy):
    flags = ["--legacy"] if legacy else []
    done = action(shop, *flags, action_id, "null")
    if action_id == "cancel-downgrade":  # nothing prepared: the refusal is the answer
        assert done.returncode == 1 and "nothing to cancel" in done.stderr, done
        return
    if legacy:
        assert done.returncode == 0, done.stderr
        assert set(json.loads(done.stdout)) == {"version", "message", "value", "copyable", "qr"}
    else:
        result(done)


def test_admin_credentials_are_masked_and_copyable(shop):
    shown = result(action(shop, "admin-credentials"))["result"]
    assert shown["value"] == ADMIN_KEY and shown["masked"] and shown["copyable"]


# ---- the seller's work --------------------------------------------------------------------


def test_a_seller_runs_the_business_from_actions(shop):
    product = result(action(shop, "create-product", '{"slug": "app", "name": "App", '
                            '"price_sats": 1000}'))  # fmt: skip
    assert "'App' (app)" in product["message"]
    result(action(shop, "create-policy", json.dumps(
        {"product": "app", "slug": "yearly", "name": "Yearly", "duration_days": 365,
         "max_machines": 2, "is_default": True})))  # fmt: skip
    # "-": the input on stdin.
    issued = result(
        action(shop, "issue-license", "-", stdin='{"product": "app", "note": "order 7"}')
    )
    key = issued["result"]["value"]
    assert key.startswith("LIC1-") and issued["result"]["copyable"]
    with closing(connect(shop / "keysmith.db")) as conn:
        (license_id, expires_at, issued_at) = conn.execute(
            "SELECT id, expires_at, issued_at FROM licenses WHERE license_key = ?", (key,)
        ).fetchone()
    assert expires_at - issued_at == 365 * 86_400, "the default policy's duration applies"

    found = result(action(shop, "search-licenses", '{"query": "order 7"}'))["result"]["value"]
    assert [m["value"] for m in found] == [key]
    assert license_id in found[0]["name"] and "active" in found[0]["name"]

    for step, status in (("suspend", "suspended"), ("unsuspend", "active"), ("revoke", "revoked")):
        done = result(action(shop, f"{step}-license", json.dumps({"license_id": license_id})))
        assert f"is now {status}" in done["message"]
    with closing(connect(shop / "keysmith.db")) as conn:
        (status,) = conn.execute(
            "SELECT status FROM licenses WHERE id = ?", (license_id,)
        ).fetchone()
        actors = conn.execute(
            "SELECT actor, action FROM audit_log WHERE subject = ? ORDER BY id",
            (f"license:{license_id}",),
        ).fetchall()
    assert status == "revoked"
    assert actors == [("action", "license.issue"), ("action", "license.suspend"),
                      ("action", "license.unsuspend"), ("action", "license.revoke")]  # fmt: skip
    audit = result(action(shop, "audit-log", json.dumps({"subject": f"license:{license_id}"})))
    assert [m["name"].split(" · ")[1] for m in audit["result"]["value"]] == [
        "license.revoke", "license.unsuspend", "license.suspend", "license.issue",
    ]  # fmt: skip


def test_machines_are_listed_and_one_is_deactivated(shop):
    with closing(connect(shop / "keysmith.db")) as conn:
        license_id, machine_id = conn.execute(
            "SELECT license_id, id FROM machines WHERE deactivated_at IS NULL LIMIT 1"
        ).fetchone()
    listed = result(action(shop, "list-machines", json.dumps({"license_id": license_id})))
    assert machine_id in [m["value"] for m in listed["result"]["value"]]
    done = result(action(shop, "deactivate-machine", json.dumps({"machine_id": machine_id})))
    assert machine_id in done["message"]
    again = refused(action(shop, "deactivate-machine", json.dumps({"machine_id": machine_id})))
    assert "already deactivated" in again and "Nothing was changed" in again
    listed = result(action(shop, "list-machines", json.dumps({"license_id": license_id})))
    assert machine_id not in [m["value"] for m in (listed["result"] or {"value": []})["value"]]


def test_discount_codes_are_created_and_disabled_by_their_text(shop):
    created = result(action(shop, "create-discount-code", json.dumps(
        {"code": "LAUNCH-27", "kind": "percent", "amount": 20})))  # fmt: skip
    assert created["result"]["value"] == "LAUNCH-27"
    result(action(shop, "disable-discount-code", '{"code": "LAUNCH-27"}'))
    with closing(connect(shop / "keysmith.db")) as conn:
        (disabled,) = conn.execute(
            "SELECT disabled FROM discount_codes WHERE code = 'LAUNCH-27'"
        ).fetchone()
    assert disabled == 1


def test_a_code_left_empty_is_generated_strong_and_a_guessable_one_is_warned_of(shop):
    made = result(action(shop, "create-discount-code", '{"kind": "free_license"}'))
    code = made["result"]["value"]
    assert re.fullmatch(r"[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}", code), code
    assert "Warning" not in made["message"]
    weak = result(action(shop, "create-discount-code", '{"code": "FREE9", "kind": "free_license"}'))
    # 26^4 x 10 shapes, half tried, at the default 10 wrong codes a minute: 158.7 days.
    assert "Warning: code 'FREE9' is weak" in weak["message"]
    assert "158.7 days on average" in weak["message"]


# ---- bad input: a clear message naming the field, and nothing changed ---------------------

BAD_INPUT = [
    ("issue-license", "{not json", "not valid JSON"),
    ("issue-license", '["app"]', "must be a JSON object"),
    ("issue-license", '{"product": "app", "colour": "red"}', "Unknown field 'colour'"),
    ("issue-license", '{"product": 7}', "'product' (Product) must be text"),
    ("issue-license", "{}", "'product' (Product) is required"),
    ("issue-license", '{"product": "no-such-product"}', "There is no product 'no-such-product'"),
    ("issue-license", '{"product": "Not A Slug"}', "'product' must be a slug"),
    ("issue-license", '{"product": "x", "expires_at": "2020-01-01T00:00:00Z"}', "future"),
    ("revoke-license", '{"license_id": "abc"}', "'license_id' must be an id"),
    ("revoke-license", '{"license_id": "3f2a0c1e-9b7d-4c1a-8e2f-0a1b2c3d4e5f"}',
     "There is no license 3f2a0c1e-9b7d-4c1a-8e2f-0a1b2c3d4e5f"),
    ("search-licenses", '{"limit": "3"}', "'limit' (At most) must be a number"),
    ("search-licenses", '{"limit": 0}', "'limit' (At most) must be between 1 and 200"),
    ("search-licenses", '{"limit": 2.5}', "must be a whole number"),
    ("search-licenses", '{"status": "lost"}', "'status' (Status) must be one of"),
    ("create-policy", '{"product": "x", "slug": "y", "name": "Y", "is_trial": "yes"}',
     "'is_trial' (Trial) must be true or false"),
    ("create-product", '{"slug": "app2", "name": "A", "price_sats": -1}', "between 0 and"),
    ("create-discount-code", '{"code": "X", "kind": "half"}', "'kind' (Kind) must be one of"),
    ("disable-discount-code", '{"code": "NOPE"}', "There is no discount code 'NOPE'"),
    ("migration-status", '{"x": 1}', "takes no input"),
]  # fmt: skip


@pytest.mark.parametrize(("action_id", "raw", "expected"), BAD_INPUT)
def test_bad_input_is_refused_by_name_and_changes_nothing(shop, action_id, raw, expected):
    before = db_dump(shop)
    error = refused(action(shop, action_id, raw))
    assert expected in error
    assert "Nothing was changed" in error
    assert db_dump(shop) == before


def test_a_duplicate_product_is_refused_and_changes_nothing(shop):
    product = '{"slug": "dup", "name": "Dup", "price_sats": 1}'
    result(action(shop, "create-product", product))
    before = db_dump(shop)
    assert "already exists" in refused(action(shop, "create-product", product))
    assert db_dump(shop) == before


# ---- how the input arrives -----------------------------------------------------------------


def test_legacy_reads_the_form_from_stdin_as_0_3_5_writes_it_or_from_the_argument(shop):
    form = json.dumps({"query": None, "status": "any", "limit": 1})
    from_stdin = json.loads(action(shop, "--legacy", "search-licenses", stdin=form).stdout)
    from_argument = json.loads(action(shop, "--legacy", "search-licenses", form).stdout)
    assert from_stdin == from_argument
    assert from_stdin["version"] == "0" and from_stdin["value"]


# ---- refusals that depend on the database's state ------------------------------------------


def test_licensing_actions_wait_for_the_upgrade_and_change_nothing(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    apply_range(data / "keysmith.db", upto=8)
    before = db_dump(data)
    error = refused(action(data, "create-product", '{"slug": "a", "name": "A", "price_sats": 1}'))
    assert "not upgraded to this version yet" in error and "Start the service" in error
    assert db_dump(data) == before
    # At the current schema, but the daemon never started: no issuer key, no admin key.
    apply_range(data / "keysmith.db")
    before = db_dump(data)
    error = refused(action(data, "issue-license", '{"product": "app"}'))
    assert "has not finished its first start" in error
    assert db_dump(data) == before
    empty = tmp_path / "empty"
    empty.mkdir()
    error = refused(action(empty, "search-licenses", "{}"))
    assert "No database yet" in error
    assert list(empty.iterdir()) == []


def test_heal_history_shows_when_which_migration_the_evidence_and_what_was_done(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    apply_range(data / "keysmith.db")
    assert result(action(data, "heal-history"))["result"] is None
    drifted = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, drifted)
    five = next(drifted.glob("0005_*.sql"))
    five.write_bytes(five.read_bytes().replace(b"\n", b"\r\n"))
    apply_range(data / "keysmith.db", drifted)
    heals = result(action(data, "heal-history"))["result"]["value"]
    assert len(heals) == 1
    assert "migration 5: re-stamped the checksum" in heals[0]["name"]
    assert heals[0]["value"] == "cosmetic: line endings (applied LF, now CRLF)"
    assert heals[0]["description"].startswith("by Keysmith ")


def test_an_unexpected_failure_is_a_message_not_a_traceback(shop):
    # A license row whose issue time is text (written past the schema's CHECK, as a foreign
    # tool could): a failure no action foresees. (Bad stored JSON no longer is one: it is
    # answered as an empty value, see test_hardening_api.)
    with closing(connect(shop / "keysmith.db")) as conn:
        conn.execute("PRAGMA ignore_check_constraints = ON")
        # The newest license: the first the search reads, whatever the seed made.
        conn.execute(
            "UPDATE licenses SET issued_at = 'not a time' WHERE rowid = "
            "(SELECT rowid FROM licenses ORDER BY issued_at DESC, rowid DESC LIMIT 1)"
        )
    before = db_dump(shop)
    error = refused(action(shop, "search-licenses", "{}"))
    assert "failed unexpectedly" in error and "nothing was left half-done" in error
    assert db_dump(shop) == before


# ---- the console password beside a restore -------------------------------------------------

PASSWORD_FORM = '{"password": "correct horse battery staple"}'


def console_hash(data: Path) -> str | None:
    with closing(connect(data / "keysmith.db")) as conn:
        row = conn.execute(
            "SELECT value FROM settings WHERE key = 'console_password_argon2id'"
        ).fetchone()
    return row[0] if row else None


def wait_until_it_opens(proc: subprocess.Popen[str], path: Path, timeout: float = 60) -> None:
    """Until `proc` has `path` open (or has exited): from then on it waits on that lock."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        fds = Path(f"/proc/{proc.pid}/fd")
        with contextlib.suppress(OSError):
            if any(os.readlink(fd) == str(path) for fd in fds.iterdir()):
                return
        time.sleep(0.05)


def test_setting_the_console_password_waits_for_a_restore_to_finish(shop):
    # A restore holds the users lock exclusively while it replaces the file: a password written
    # into the old file meanwhile would be committed, then gone. The action waits, then writes
    # into the file the restore left.
    restoring = UsersLock(shop / "keysmith.db")
    restoring.take_exclusive("stand for a restore in this test")
    try:
        before = db_dump(shop)
        waiting = subprocess.Popen(
            [sys.executable, "-m", "daemon", "action", "set-console-password", PASSWORD_FORM],
            env=base_env({"KEYSMITH_DB_PATH": str(shop / "keysmith.db")}), cwd=REPO,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        wait_until_it_opens(waiting, restoring.path)
        time.sleep(0.5)
        assert waiting.poll() is None, waiting.communicate()
        assert db_dump(shop) == before
    finally:
        restoring.release()
    _out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, err
    assert console_hash(shop).startswith("$argon2id$")


def test_setting_the_console_password_refuses_while_a_restore_holds_the_database(shop):
    restoring = UsersLock(shop / "keysmith.db")
    restoring.take_exclusive("stand for a restore in this test")
    try:
        before = db_dump(shop)
        error = refused(action(shop, "set-console-password", PASSWORD_FORM))
    finally:
        restoring.release()
    assert "being restored from a backup" in error and "Nothing was changed" in error, error
    assert db_dump(shop) == before and console_hash(shop) is None
