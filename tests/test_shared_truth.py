"""The database file is the one truth of every validation, in every process that serves it.

Several daemons on one file, a plain `sqlite3` writer (the Python module and the CLI), and a
StartOS action's short-lived process all write to the same licenses; the promise is that the
very next validation in every daemon answers what was committed last, whoever committed it.
Also here: the verified-key cache (cold, evicting, a license changed while its key is
remembered) never changes an answer, and activate/deactivate churn leaves a bounded table.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from contextlib import ExitStack, closing
from typing import Any

import pytest

from tests.daemon_proc import DaemonProc
from tests.test_api_support import admin, issue, make_product, must, rows

DAEMONS = 3


def _validate(daemon: DaemonProc, key: str, **extra: Any) -> dict[str, Any]:
    return must(daemon.request("POST", "/v1/validate", {"key": key, **extra}), 200)


def _reason(daemon: DaemonProc, key: str, **extra: Any) -> str:
    answer = _validate(daemon, key, **extra)
    return "ok" if answer["ok"] else answer["reason"]


def _revoke(daemon: DaemonProc, license_id: str) -> None:
    must(admin(daemon, "POST", f"/v1/admin/licenses/{license_id}/revoke", {}), 200)


def _write(daemon: DaemonProc, sql: str, *params: Any) -> None:
    """A plain writer on the file, behind every daemon's back."""
    with closing(sqlite3.connect(daemon.db_path, timeout=10)) as conn, conn:
        conn.execute(sql, params)


@pytest.fixture(scope="module")
def daemons(tmp_path_factory):
    """Three daemons serving one database file, each on its own port."""
    root = tmp_path_factory.mktemp("shared")
    db_path = root / "data" / "keysmith.db"
    with ExitStack() as stack:
        procs = [
            stack.enter_context(DaemonProc(root / f"d{n}", db_path=db_path)) for n in range(DAEMONS)
        ]
        for proc in procs:
            assert must(proc.request("GET", "/healthz"), 200)["state"] == "serving"
        yield procs


def test_a_license_issued_by_one_daemon_validates_on_every_other(daemons):
    first, *others = daemons
    product = make_product(first)
    license_ = issue(first, product)
    for daemon in others:
        assert _reason(daemon, license_["license_key"], product_slug=product) == "ok"


def test_a_revoke_through_one_daemon_is_the_very_next_answer_of_every_other(daemons):
    product = make_product(daemons[0])
    license_ = issue(daemons[0], product)
    for daemon in daemons:  # every daemon has the key verified and remembered
        assert _reason(daemon, license_["license_key"]) == "ok"
    _revoke(daemons[1], license_["license_id"])
    for daemon in daemons:
        assert _reason(daemon, license_["license_key"]) == "revoked"


@pytest.mark.parametrize("writer", ["python", "cli"])
def test_a_plain_sqlite_writer_is_seen_by_the_very_next_validation(daemons, writer):
    product = make_product(daemons[0])
    license_ = issue(daemons[0], product)
    key, license_id = license_["license_key"], license_["license_id"]
    for daemon in daemons:
        assert _reason(daemon, key) == "ok"
    sql = f"UPDATE licenses SET status = 'suspended', suspended_at = 1 WHERE id = '{license_id}'"
    if writer == "python":
        _write(daemons[0], sql)
    else:
        subprocess.run(
            ["sqlite3", "-cmd", ".timeout 10000", str(daemons[0].db_path), sql],
            check=True,
            timeout=30,
        )
    for daemon in daemons:
        assert _reason(daemon, key) == "suspended"
    _write(
        daemons[0],
        "UPDATE licenses SET status = 'active', suspended_at = NULL WHERE id = ?",
        license_id,
    )
    for daemon in daemons:
        assert _reason(daemon, key) == "ok"


# What a StartOS action does: open the licensing service in its own short-lived process and
# write through it while the daemons serve.
ACTION = """
import asyncio, sys
from daemon.db import open_pool
from daemon.licensing.service import Licensing

async def main():
    pool = await open_pool(sys.argv[1])
    try:
        service = await Licensing.open(pool)
        await service.licenses.revoke(sys.argv[2], "refunded")
    finally:
        await pool.close()

asyncio.run(main())
"""


def test_a_revoke_by_a_short_lived_process_is_the_next_answer_of_every_daemon(daemons):
    product = make_product(daemons[0])
    license_ = issue(daemons[0], product)
    for daemon in daemons:
        assert _reason(daemon, license_["license_key"]) == "ok"
    subprocess.run(
        [sys.executable, "-c", ACTION, str(daemons[0].db_path), license_["license_id"]],
        env=daemons[0].env,
        check=True,
        timeout=60,
    )
    for daemon in daemons:
        assert _reason(daemon, license_["license_key"]) == "revoked"


def test_seat_changes_are_shared_by_every_daemon(daemons):
    first, second, third = daemons
    product = make_product(first, seats=1)
    license_ = issue(first, product)
    key, license_id = license_["license_key"], license_["license_id"]
    assert _reason(first, key, fingerprint="machine-a") == "ok"  # claims the only seat
    assert _reason(second, key, fingerprint="machine-b") == "fingerprint_mismatch"
    assert _reason(third, key, fingerprint="machine-a") == "ok"
    # The seat is freed behind every daemon's back; the next validation may claim it.
    _write(
        first, "UPDATE machines SET deactivated_at = last_seen_at WHERE license_id = ?", license_id
    )
    assert _reason(second, key, fingerprint="machine-b") == "ok"
    assert _reason(third, key, fingerprint="machine-a") == "fingerprint_mismatch"
    # The seat limit is the policy's: raised by a plain writer, seen at once.
    _write(
        first,
        "UPDATE policies SET max_machines = 2 "
        "WHERE id = (SELECT policy_id FROM licenses WHERE id = ?)",
        license_id,
    )
    assert _reason(third, key, fingerprint="machine-a") == "ok"
    assert rows(
        first,
        "SELECT count(*) FROM machines WHERE license_id = ? AND deactivated_at IS NULL",
        license_id,
    ) == [(2,)]


def test_expiry_written_behind_the_daemon_is_the_next_answer(daemons):
    product = make_product(daemons[0])
    license_ = issue(daemons[0], product)
    assert _reason(daemons[1], license_["license_key"]) == "ok"
    _write(
        daemons[0],
        # Right-hand sides read the old row: it expired 50 seconds ago.
        "UPDATE licenses SET issued_at = issued_at - 100, expires_at = issued_at - 50 WHERE id = ?",
        license_["license_id"],
    )
    assert _reason(daemons[1], license_["license_key"]) == "expired"


def test_the_key_cache_evicts_and_never_changes_an_answer(tmp_path):
    with DaemonProc(tmp_path, env={"KEYSMITH_KEY_CACHE_SIZE": "2"}) as daemon:
        product = make_product(daemon)
        licenses = [issue(daemon, product) for _ in range(5)]
        forged = licenses[0]["license_key"][:-8] + "AAAAAAAA"
        for _ in range(3):
            for license_ in licenses:
                assert _reason(daemon, license_["license_key"]) == "ok"
            assert _reason(daemon, forged) in ("bad_signature", "bad_format")
        # Revoked while remembered (the last two keys were the most recent ones).
        for license_ in licenses[-2:]:
            _revoke(daemon, license_["license_id"])
            assert _reason(daemon, license_["license_key"]) == "revoked"
        _, text = daemon.request("GET", "/metrics")
        assert "keysmith_key_cache_entries 2.0" in text


def test_a_cold_start_answers_the_committed_state(tmp_path):
    with DaemonProc(tmp_path) as daemon:
        product = make_product(daemon)
        license_ = issue(daemon, product)
        must(admin(daemon, "POST", f"/v1/admin/licenses/{license_['license_id']}/suspend", {}), 200)
        assert daemon.stop() == 0
    with DaemonProc(tmp_path) as daemon:  # nothing remembered: the first answer is read
        assert _reason(daemon, license_["license_key"]) == "suspended"


def test_activate_deactivate_churn_leaves_a_bounded_table(tmp_path):
    history = 5
    with DaemonProc(tmp_path, env={"KEYSMITH_MACHINE_HISTORY": str(history)}) as daemon:
        product = make_product(daemon, seats=1)
        license_ = issue(daemon, product)
        key, license_id = license_["license_key"], license_["license_id"]
        for n in range(40):
            fingerprint = f"churn-{n}"
            body = {"key": key, "fingerprint": fingerprint}
            assert must(daemon.request("POST", "/v1/machines/activate", body), 200)["ok"]
            assert must(daemon.request("POST", "/v1/machines/deactivate", body), 200)["ok"]
        counts = rows(
            daemon,
            "SELECT count(*), count(deactivated_at) FROM machines WHERE license_id = ?",
            license_id,
        )
        # The most recent deactivated machines are kept as history, the older ones deleted.
        assert counts == [(history, history)]
        kept = rows(daemon, "SELECT fingerprint FROM machines WHERE license_id = ?", license_id)
        assert len(kept) == history
