"""`POST /v1/validate` at 64 concurrent connections while an admin revokes licenses one by one.

The promise under test: every validation answers 200 with either the old state (ok) or the new
one (revoked), never an error; and once a revoke has answered, every validation of that key
sent afterwards says revoked, starting with the very next one.

All timing is taken on one clock (this process's monotonic clock, one event loop), so "sent
after the revoke answered" is exact, not estimated. The load is bounded in count and in time.

Also here: 64 machines claiming the seats of one license at the same moment never get more
seats than it has.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass

import aiohttp
import pytest

from tests.daemon_proc import DaemonProc
from tests.test_api_support import issue, make_product, rows

CONNECTIONS = 64
REVOKED = 24  # licenses revoked one by one during the load
CONTROLS = 8  # licenses never revoked: must answer ok throughout
PAUSE_BETWEEN_REVOKES = 0.05  # seconds; lets the load see each license in both states
MAX_VALIDATIONS = 40_000  # a hard bound on the load, whatever the machine's speed
MAX_SECONDS = 60.0


@dataclass(frozen=True)
class Validation:
    key_index: int
    sent: float
    answered: float
    status: int
    body: dict | str


@dataclass(frozen=True)
class Revocation:
    key_index: int
    sent: float
    answered: float
    status: int
    next_validation: Validation  # the revoker's own validation right after the answer


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """Run the load once; the tests below each check one promise about what it recorded."""
    with DaemonProc(tmp_path_factory.mktemp("revocation")) as daemon:
        product = make_product(daemon, seats=1)
        licenses = [issue(daemon, product) for _ in range(REVOKED + CONTROLS)]
        validations, revocations, opened = asyncio.run(_run_load(daemon, licenses))
        statuses = dict(
            rows(
                daemon,
                "SELECT id, status FROM licenses WHERE product_id = ?",
                licenses[0]["product_id"],
            )
        )
        revoke_audits = rows(
            daemon, "SELECT count(*) FROM audit_log WHERE action = 'license.revoke'"
        )[0][0]
        log = daemon.log_text()
        assert daemon.stop() == 0, log
    return {
        "licenses": licenses,
        "validations": validations,
        "revocations": revocations,
        "connections_opened": opened,
        "statuses": statuses,
        "revoke_audits": revoke_audits,
        "log": log,
    }


async def _run_load(
    daemon: DaemonProc, licenses: list[dict]
) -> tuple[list[Validation], list[Revocation], int]:
    keys = [lic["license_key"] for lic in licenses]
    validations: list[Validation] = []
    opened = {"connections": 0}
    revoking_done = asyncio.Event()
    timeout = aiohttp.ClientTimeout(total=15)

    async def validate(session: aiohttp.ClientSession, index: int) -> Validation:
        sent = time.monotonic()
        async with session.post(f"{daemon.url}/v1/validate", json={"key": keys[index]}) as resp:
            body = await (resp.json() if resp.content_type == "application/json" else resp.text())
            return Validation(index, sent, time.monotonic(), resp.status, body)

    async def worker(session: aiohttp.ClientSession, seed: int) -> None:
        rng = random.Random(seed)
        deadline = time.monotonic() + MAX_SECONDS
        while not revoking_done.is_set() and time.monotonic() < deadline:
            if len(validations) >= MAX_VALIDATIONS:
                return
            validations.append(await validate(session, rng.randrange(len(keys))))

    async def revoker(admin: aiohttp.ClientSession) -> list:
        done = []
        await asyncio.sleep(0.3)  # let the load reach full concurrency first
        try:
            for index, lic in enumerate(licenses[:REVOKED]):
                sent = time.monotonic()
                async with admin.post(
                    f"{daemon.url}/v1/admin/licenses/{lic['license_id']}/revoke",
                    json={"reason": "chargeback"},
                    headers=daemon.admin_headers(),
                ) as resp:
                    await resp.read()
                    answered, status = time.monotonic(), resp.status
                # The very next validation of this key, sent the moment the revoke answered.
                after = await validate(admin, index)
                validations.append(after)
                done.append(Revocation(index, sent, answered, status, after))
                await asyncio.sleep(PAUSE_BETWEEN_REVOKES)
        finally:
            await asyncio.sleep(0.3)  # the load keeps going a little after the last revoke
            revoking_done.set()
        return done

    async def connection_opened(*_args: object) -> None:
        opened["connections"] += 1

    tracing = aiohttp.TraceConfig()
    tracing.on_connection_create_end.append(connection_opened)
    load_connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with (
        aiohttp.ClientSession(
            connector=load_connector, timeout=timeout, trace_configs=[tracing]
        ) as load,
        aiohttp.ClientSession(timeout=timeout) as admin,
    ):
        workers = [asyncio.create_task(worker(load, n)) for n in range(CONNECTIONS)]
        revocations = await revoker(admin)
        await asyncio.gather(*workers)
    return validations, revocations, opened["connections"]


def _peak_outstanding(validations: list[Validation]) -> int:
    """The most requests awaiting their answer at one moment (each holds its own connection)."""
    events = sorted([(v.sent, 1) for v in validations] + [(v.answered, -1) for v in validations])
    now = peak = 0
    for _at, step in events:
        now += step
        peak = max(peak, now)
    return peak


def test_the_load_was_real_and_bounded(loaded):
    assert loaded["connections_opened"] >= CONNECTIONS
    # 64 load connections, plus the revoker's own validation now and then.
    assert CONNECTIONS <= _peak_outstanding(loaded["validations"]) <= CONNECTIONS + 1
    assert [r.status for r in loaded["revocations"]] == [200] * REVOKED
    assert len(loaded["revocations"]) == REVOKED
    # Enough validations landed between revokes to see both states of most licenses.
    assert REVOKED * 20 <= len(loaded["validations"]) <= MAX_VALIDATIONS + REVOKED


def test_every_validation_answers_the_old_or_the_new_state(loaded):
    outcomes = Counter()
    for v in loaded["validations"]:
        assert v.status == 200, v
        assert isinstance(v.body, dict), v
        if v.body["ok"] is True:
            assert v.body["status"] == "active", v
            assert v.body["license_id"] == loaded["licenses"][v.key_index]["license_id"], v
            outcomes["ok"] += 1
        else:
            assert v.body == {"ok": False, "reason": "revoked"}, v
            assert v.key_index < REVOKED, f"a never-revoked license answered revoked: {v}"
            outcomes["revoked"] += 1
    assert outcomes["ok"] > 0 and outcomes["revoked"] > 0, outcomes


def test_after_a_revoke_answers_every_later_validation_says_revoked(loaded):
    by_key: dict[int, list[Validation]] = {}
    for v in loaded["validations"]:
        by_key.setdefault(v.key_index, []).append(v)
    for revocation in loaded["revocations"]:
        assert revocation.next_validation.body == {"ok": False, "reason": "revoked"}, revocation
        for v in by_key.get(revocation.key_index, []):
            if v.sent >= revocation.answered:
                assert v.body == {"ok": False, "reason": "revoked"}, (revocation, v)
            elif v.answered <= revocation.sent:
                assert v.body["ok"] is True, (revocation, v)  # before the revoke was asked


def test_no_license_flips_back_once_a_validation_said_revoked(loaded):
    by_key: dict[int, list[Validation]] = {}
    for v in loaded["validations"]:
        by_key.setdefault(v.key_index, []).append(v)
    for index, seen in by_key.items():
        revoked_at = [v.answered for v in seen if v.body.get("ok") is False]
        if not revoked_at:
            continue
        first = min(revoked_at)
        later_ok = [v for v in seen if v.sent >= first and v.body.get("ok") is True]
        assert not later_ok, (index, later_ok[:3])


def test_the_database_holds_exactly_the_revocations(loaded):
    licenses = loaded["licenses"]
    expected = {lic["license_id"]: "revoked" for lic in licenses[:REVOKED]}
    expected.update({lic["license_id"]: "active" for lic in licenses[REVOKED:]})
    assert loaded["statuses"] == expected
    assert loaded["revoke_audits"] == REVOKED
    assert "unhandled error" not in loaded["log"] and "Traceback" not in loaded["log"]


def test_concurrent_seat_claims_never_exceed_the_seats(tmp_path):
    """64 machines validate one 3-seat license at the same moment: exactly three get a seat,
    every other one is told the license is out of seats, and the database agrees."""
    seats = 3
    with DaemonProc(tmp_path) as daemon:
        lic = issue(daemon, make_product(daemon, seats=seats))

        async def claim_all() -> list[dict]:
            connector = aiohttp.TCPConnector(limit=CONNECTIONS)
            timeout = aiohttp.ClientTimeout(total=15)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

                async def claim(n: int) -> dict:
                    body = {"key": lic["license_key"], "fingerprint": f"machine-{n}"}
                    async with session.post(f"{daemon.url}/v1/validate", json=body) as resp:
                        assert resp.status == 200, await resp.text()
                        return await resp.json()

                return await asyncio.gather(*(claim(n) for n in range(CONNECTIONS)))

        answers = asyncio.run(claim_all())
        machines = rows(
            daemon,
            "SELECT count(*) FROM machines WHERE license_id = ? AND deactivated_at IS NULL",
            lic["license_id"],
        )[0][0]
    outcomes = Counter("ok" if a["ok"] else a["reason"] for a in answers)
    assert outcomes == {"ok": seats, "too_many_machines": CONNECTIONS - seats}, outcomes
    assert len({a["machine_id"] for a in answers if a["ok"]}) == seats
    assert machines == seats
