"""Webhooks against the real daemon and a real receiver on loopback (tests/receiver.py):
every event delivered once, signed; a receiver down then up; a SIGKILL with events pending;
hostile receivers (hanging, a 10 MB answer, a redirect) cost validate nothing measurable.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import sqlite3
import statistics
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from daemon.licensing.outbox import MAX_BACKOFF_FACTOR, MAX_BACKOFF_SECONDS, backoff
from tests.daemon_proc import DaemonProc
from tests.kit import MIGRATIONS
from tests.receiver import ALLOW_LOOPBACK, Receiver
from tests.test_api_support import admin, db_dump, issue, make_product, must, rows

EVENTS = [
    "license.issued",
    "license.revoked",
    "license.suspended",
    "license.unsuspended",
    "machine.activated",
    "machine.deactivated",
    "migration.self_healed",
]
# Every event type there is: the above, and the catalogue's and codes' (the default
# subscription above leaves them out, so the tests that count deliveries need not).
ALL_EVENTS = [*EVENTS, "product.created", "code.redeemed"]
FAST = {
    "KEYSMITH_WEBHOOK_BACKOFF": "0.2",
    "KEYSMITH_WEBHOOK_TIMEOUT": "1",
    "KEYSMITH_WEBHOOK_MAX_ATTEMPTS": "50",
    **ALLOW_LOOPBACK,
}


def _daemon(tmp_path: Path, **kwargs) -> DaemonProc:
    return DaemonProc(tmp_path, env=dict(FAST), **kwargs)


def _endpoint(daemon: DaemonProc, url: str, events: list[str] = EVENTS, **extra) -> dict:
    body = {"url": url, "event_types": events, "description": "CRM", **extra}
    return must(admin(daemon, "POST", "/v1/admin/webhook-endpoints", body), 200)


def _set_active(daemon: DaemonProc, endpoint_id: str, active: bool) -> dict:
    path = f"/v1/admin/webhook-endpoints/{endpoint_id}/active"
    return must(admin(daemon, "PATCH", path, {"active": active}), 200)


def _lifecycle(daemon: DaemonProc) -> list[str]:
    """Every license and machine event once; returns the types in the order they happened."""
    product = make_product(daemon, seats=2)
    issued = issue(daemon, product)
    key, license_id = issued["license_key"], issued["license_id"]
    seat = {"key": key, "fingerprint": "fp-1"}
    must(daemon.request("POST", "/v1/machines/activate", seat), 200)
    must(daemon.request("POST", "/v1/machines/deactivate", seat), 200)
    for change in ("suspend", "unsuspend", "revoke"):
        must(admin(daemon, "POST", f"/v1/admin/licenses/{license_id}/{change}", {}), 200)
    return [
        "license.issued",
        "machine.activated",
        "machine.deactivated",
        "license.suspended",
        "license.unsuspended",
        "license.revoked",
    ]


def _deliveries(daemon: DaemonProc, endpoint_id: str) -> list[dict]:
    path = f"/v1/admin/webhook-deliveries?endpoint_id={endpoint_id}&limit=500"
    return must(admin(daemon, "GET", path), 200)["deliveries"]


def _settled(daemon: DaemonProc, endpoint_id: str, count: int, timeout: float = 30) -> list:
    """The endpoint's deliveries once `count` of them are no longer pending (oldest first)."""
    deadline = time.monotonic() + timeout
    while True:
        found = _deliveries(daemon, endpoint_id)
        if sum(d["status"] != "pending" for d in found) >= count:
            return found[::-1]
        assert time.monotonic() < deadline, found
        time.sleep(0.1)


def test_every_event_is_delivered_once_signed_and_in_order(tmp_path):
    with Receiver() as receiver, Receiver() as muted, _daemon(tmp_path) as daemon:
        created = _endpoint(daemon, receiver.url)
        secret = created["secret"]
        assert len(bytes.fromhex(secret)) == 32  # generated: 32 random bytes
        disabled = _endpoint(daemon, muted.url, secret="a-secret-of-my-own-choosing")
        assert disabled["secret"] == "a-secret-of-my-own-choosing"
        _set_active(daemon, disabled["id"], False)
        listed = must(admin(daemon, "GET", "/v1/admin/webhook-endpoints"), 200)
        assert secret not in str(listed) and "a-secret-of-my-own" not in str(listed)

        expected = _lifecycle(daemon)
        seen = receiver.wait_for(len(expected))
        time.sleep(1.5)  # any duplicate would arrive within a few polls
        assert [s.event["event_type"] for s in receiver.delivered()] == expected
        for s in seen:
            assert s.signed_by(secret), s.headers
            assert s.headers["X-Keysat-Event"] == s.event["event_type"]
        assert len({s.headers["X-Keysat-Delivery"] for s in seen}) == len(expected)
        assert seen[0].event["data"]["license_key"]  # a shop can email the key
        log = _settled(daemon, created["id"], len(expected))
        delivered_once = [("delivered", 1)] * len(expected)
        assert [(d["status"], d["attempt_count"]) for d in log] == delivered_once
        assert [d["id"] for d in log] == [s.headers["X-Keysat-Delivery"] for s in seen]
        assert muted.seen == []  # disabled: nothing sent, nothing queued
        assert _deliveries(daemon, disabled["id"]) == []
        metrics = daemon.request("GET", "/metrics")[1]
        assert 'keysmith_webhook_deliveries_total{result="delivered"} 6.0' in metrics
        assert "keysmith_webhook_outbox_depth 0.0" in metrics


def test_a_receiver_down_then_up_gets_everything_in_order_with_the_attempts_logged(tmp_path):
    with Receiver(mode="down") as receiver, _daemon(tmp_path) as daemon:
        endpoint = _endpoint(daemon, receiver.url)
        expected = _lifecycle(daemon)
        deadline = time.monotonic() + 30
        while len(receiver.seen) < 4:  # the first event refused a few times
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # In order: nothing after the first event is tried while the first is refused.
        assert {s.event["event_type"] for s in receiver.seen} == {expected[0]}
        metrics = daemon.request("GET", "/metrics")[1]
        assert "keysmith_webhook_outbox_depth 6.0" in metrics
        assert _oldest_pending_seconds(daemon) > 0
        receiver.mode = "ok"
        seen = receiver.wait_for(len(expected))
        assert [s.event["event_type"] for s in seen] == expected
        log = _settled(daemon, endpoint["id"], len(expected))
        first = log[0]
        assert first["status"] == "delivered" and first["attempt_count"] >= 4
        assert [a["response_code"] for a in first["log"]][:3] == [503, 503, 503]
        assert first["log"][0]["error"] == "HTTP 503 Service Unavailable"  # never its body
        assert first["log"][-1]["status"] == "delivered"
        # The delivery id did not change across the attempts.
        refused = [s for s in receiver.seen if s.event["event_type"] == expected[0]]
        assert {s.headers["X-Keysat-Delivery"] for s in refused} == {first["id"]}
        deadline = time.monotonic() + 30
        while _oldest_pending_seconds(daemon) != 0:  # the sender's next round sees none
            assert time.monotonic() < deadline
            time.sleep(0.1)


def _oldest_pending_seconds(daemon: DaemonProc) -> float:
    text = daemon.request("GET", "/metrics")[1]
    name = "keysmith_webhook_oldest_pending_seconds "
    [line] = [x for x in text.splitlines() if x.startswith(name)]
    return float(line.split()[-1])


def test_backoff_doubles_from_the_base_jittered_and_stops_doubling_at_64_times():
    random.seed(14)  # outbox.backoff draws its jitter from the module-level generator
    base = 5.0
    for attempt in range(1, 12):
        longest = min(2 ** (attempt - 1), MAX_BACKOFF_FACTOR) * base
        waits = [backoff(attempt, base) for _ in range(200)]
        assert all(0.5 * longest <= w <= longest for w in waits), (attempt, min(waits))
        assert max(waits) - min(waits) > 0.3 * longest  # jittered: endpoints spread out
    assert max(backoff(40, 100.0) for _ in range(50)) <= MAX_BACKOFF_SECONDS


def test_events_pending_at_a_sigkill_arrive_after_the_restart(tmp_path):
    with Receiver(mode="down") as receiver:
        daemon = _daemon(tmp_path).start()
        try:
            endpoint = _endpoint(daemon, receiver.url)
            expected = _lifecycle(daemon)
        finally:
            daemon.kill()
        receiver.mode = "ok"
        with _daemon(tmp_path, db_path=daemon.db_path) as again:
            seen = receiver.wait_for(len(expected))
            assert [s.event["event_type"] for s in seen] == expected
            _settled(again, endpoint["id"], len(expected))


def test_retry_sends_a_delivery_again_with_the_same_id(tmp_path):
    with Receiver() as receiver, _daemon(tmp_path) as daemon:
        endpoint = _endpoint(daemon, receiver.url, ["license.issued"])
        issue(daemon, make_product(daemon))
        [first] = receiver.wait_for(1)
        [delivery] = _settled(daemon, endpoint["id"], 1)
        retried = must(
            admin(daemon, "POST", f"/v1/admin/webhook-deliveries/{delivery['id']}/retry"), 200
        )
        assert retried["status"] == "pending" and len(retried["log"]) == 1
        _, second = receiver.wait_for(2)
        assert second.body == first.body
        assert second.headers["X-Keysat-Delivery"] == delivery["id"]


def test_a_redirect_is_not_followed(tmp_path):
    with Receiver(mode="redirect") as receiver, _daemon(tmp_path) as daemon:
        endpoint = _endpoint(daemon, receiver.url, ["license.issued"])
        issue(daemon, make_product(daemon))
        deadline = time.monotonic() + 30
        while not (log := _deliveries(daemon, endpoint["id"])[0]["log"]):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert log[0]["response_code"] == 307 and "not followed" in log[0]["error"]
        assert {s.path for s in receiver.seen} == {"/hook"}


def _validate_latencies(
    daemon: DaemonProc, key: str, receiver: Receiver | None = None, rounds: int = 100
) -> list[float]:
    """Seconds of each validate; with a receiver, batches go on until it has seen at least
    four more attempts, so the sender was at work all along the measurement."""
    seen_before = 0 if receiver is None else len(receiver.seen)
    spent: list[float] = []
    deadline = time.monotonic() + 60
    while not spent or (receiver is not None and len(receiver.seen) < seen_before + 4):
        assert time.monotonic() < deadline, "the sender made no attempts during the measurement"
        for _ in range(rounds):
            started = time.perf_counter()
            must(daemon.request("POST", "/v1/validate", {"key": key}), 200)
            spent.append(time.perf_counter() - started)
    return spent


def _peak_rss_kib(daemon: DaemonProc) -> int:
    """The daemon's peak resident memory so far (VmHWM): a 10 MB answer read whole and freed
    at once still shows here."""
    status = Path(f"/proc/{daemon.proc.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")))


@pytest.mark.parametrize("mode", ["hang", "huge"])
def test_a_hostile_receiver_does_not_slow_validate_nor_grow_memory(tmp_path, mode):
    with Receiver(mode=mode) as receiver, _daemon(tmp_path) as daemon:
        key = issue(daemon, make_product(daemon))["license_key"]
        _validate_latencies(daemon, key, rounds=50)  # warm up
        without = statistics.median(_validate_latencies(daemon, key, rounds=200))
        rss_before = _peak_rss_kib(daemon)
        for _ in range(4):  # four endpoints, each with events it will never get delivered
            _endpoint(daemon, receiver.url, ["license.issued"])
        for _ in range(5):
            issue(daemon, make_product(daemon))
        deadline = time.monotonic() + 30
        while len(receiver.seen) < 4:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with_hostile = statistics.median(_validate_latencies(daemon, key, receiver))
        attempts = len(receiver.seen)
        rss_after = _peak_rss_kib(daemon)
        print(
            f"{mode}: validate median {without * 1e3:.2f} ms without webhooks, "
            f"{with_hostile * 1e3:.2f} ms with {attempts} attempts at a {mode} receiver; "
            f"peak RSS {rss_before} -> {rss_after} KiB"
        )
        assert with_hostile < without * 5
        # Each 10 MB answer would add megabytes if it were read; a bounded read adds none.
        assert rss_after - rss_before < 20 * 1024


def test_the_delivery_log_keeps_each_endpoint_s_newest_settled_deliveries(tmp_path):
    keep = 2
    env = {**FAST, "KEYSMITH_WEBHOOK_HISTORY": str(keep)}
    with (
        Receiver() as up,
        Receiver(mode="down") as down,
        DaemonProc(tmp_path, env=env) as daemon,
    ):
        settled = _endpoint(daemon, up.url, ["license.issued"])
        product = make_product(daemon)
        first = [issue(daemon, product)["license_id"] for _ in range(4)]
        up.wait_for(len(first))
        kept = _kept(daemon, settled["id"], keep)
        # The newest two are kept, with their attempts; the older ones are gone, with their
        # attempts and their events (no other endpoint wanted those).
        assert [_event(daemon, d["event_id"]) for d in kept] == first[:-3:-1], kept
        assert all(d["status"] == "delivered" and len(d["log"]) == 1 for d in kept)
        assert _issued_events(daemon) == first[-keep:]
        orphans = rows(
            daemon,
            "SELECT count(*) FROM webhook_attempts WHERE delivery_id NOT IN "
            "(SELECT id FROM webhook_deliveries)",
        )
        assert orphans == [(0,)]

        # An event another endpoint still waits for stays, and so does every pending delivery.
        waiting = _endpoint(daemon, down.url, ["license.issued"])
        more = [issue(daemon, product)["license_id"] for _ in range(3)]
        up.wait_for(len(first) + len(more))
        kept = _kept(daemon, settled["id"], keep)
        assert [_event(daemon, d["event_id"]) for d in kept] == more[:-3:-1], kept
        pending = _deliveries(daemon, waiting["id"])
        assert [d["status"] for d in pending] == ["pending"] * len(more)
        assert [_event(daemon, d["event_id"]) for d in pending] == more[::-1]
        assert _issued_events(daemon) == more


def _kept(daemon: DaemonProc, endpoint_id: str, keep: int) -> list[dict]:
    """The endpoint's deliveries (newest first) once every one is settled and only `keep`
    are left."""
    deadline = time.monotonic() + 30
    while True:
        found = _deliveries(daemon, endpoint_id)
        if len(found) == keep and all(d["status"] != "pending" for d in found):
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.1)


def _issued_events(daemon: DaemonProc) -> list[str]:
    """The license ids of the `license.issued` events still in the outbox, oldest first."""
    payloads = rows(
        daemon, "SELECT payload FROM webhook_events WHERE event_type = 'license.issued' ORDER BY id"
    )
    return [json.loads(p)["data"]["license_id"] for (p,) in payloads]


def _event(daemon: DaemonProc, event_id: int) -> str:
    """The license id an event (kept in the outbox) is about."""
    [(payload,)] = rows(daemon, "SELECT payload FROM webhook_events WHERE id = ?", event_id)
    return json.loads(payload)["data"]["license_id"]


def test_a_heal_at_boot_is_announced_once(tmp_path):
    migrations = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, migrations)
    with Receiver() as receiver:
        with _daemon(tmp_path, migrations_dir=migrations) as daemon:
            _endpoint(daemon, receiver.url, ["migration.self_healed"])
        # A comment-only edit of an applied migration: the next boot re-stamps its checksum.
        applied = migrations / "0002_lookup_indexes.sql"
        applied.write_text("-- reviewed: no change in meaning\n" + applied.read_text())
        with _daemon(tmp_path, migrations_dir=migrations, db_path=daemon.db_path):
            [seen] = receiver.wait_for(1)
        assert seen.event["event_type"] == "migration.self_healed"
        assert seen.event["data"]["version"] == 2
        assert seen.event["data"]["action"] == "restamp"
        # Announced once: the next boot, with nothing new to heal, sends nothing more.
        with _daemon(tmp_path, migrations_dir=migrations, db_path=daemon.db_path):
            time.sleep(1.5)
        assert len(receiver.seen) == 1


def test_a_refused_change_writes_no_event(tmp_path):
    with Receiver() as receiver, _daemon(tmp_path) as daemon:
        endpoint = _endpoint(daemon, receiver.url)
        license_id = issue(daemon, make_product(daemon))["license_id"]
        _settled(daemon, endpoint["id"], 1)  # its attempt recorded: the dump stays still
        before = db_dump(daemon)
        # Unsuspending an active license is refused: no change, so no event.
        assert admin(daemon, "POST", f"/v1/admin/licenses/{license_id}/unsuspend")[0] == 404
        assert db_dump(daemon) == before
        time.sleep(1.0)
        assert len(receiver.seen) == 1


def test_the_openapi_document_describes_every_event_and_the_delivery_headers(tmp_path):
    with _daemon(tmp_path) as daemon:
        document = must(daemon.request("GET", "/v1/openapi.json"), 200)
    assert sorted(document["webhooks"]) == sorted(ALL_EVENTS)
    issued = document["webhooks"]["license.issued"]["post"]
    headers = {p["name"] for p in issued["parameters"]}
    assert headers == {"X-Keysat-Signature", "X-Keysat-Event", "X-Keysat-Delivery"}
    body = issued["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["event_type", "timestamp", "data"]  # Keysat's envelope
    assert body["properties"]["event_type"] == {"const": "license.issued"}
    assert body["properties"]["timestamp"]["format"] == "date-time"
    name = body["properties"]["data"]["$ref"].rsplit("/", 1)[1]
    fields = document["components"]["schemas"][name]["properties"]
    assert {"license_id", "invoice_id", "source", "license_key"} <= set(fields)


def test_a_delivery_out_of_attempts_is_failed_and_the_next_one_goes(tmp_path):
    env = {**FAST, "KEYSMITH_WEBHOOK_MAX_ATTEMPTS": "2"}
    with Receiver(mode="down") as receiver, DaemonProc(tmp_path, env=env) as daemon:
        endpoint = _endpoint(daemon, receiver.url, ["license.issued"])
        product = make_product(daemon)
        first = issue(daemon, product)["license_id"]
        [failed] = _settled(daemon, endpoint["id"], 1)
        assert (failed["status"], failed["attempt_count"]) == ("failed", 2)
        assert [a["status"] for a in failed["log"]] == ["retry", "failed"]
        receiver.mode = "ok"
        second = issue(daemon, product)["license_id"]
        [arrived] = receiver.wait_for(1)
        assert arrived.event["data"]["license_id"] == second
        must(admin(daemon, "POST", f"/v1/admin/webhook-deliveries/{failed['id']}/retry"), 200)
        _, again = receiver.wait_for(2)
        assert again.event["data"]["license_id"] == first
        metrics = daemon.request("GET", "/metrics")[1]
        assert 'keysmith_webhook_deliveries_total{result="failed"} 1.0' in metrics


# ----- Keysat's shapes, exactly (licensing-service/src/api/webhook_endpoints.rs,
# webhook_deliveries.rs, webhooks.rs `dispatch`, and the `dispatch` calls of admin.rs,
# machines.rs, validate.rs and webhook.rs) -----

ENDPOINT_FIELDS = {
    "id", "url", "event_types", "active", "description", "created_at", "updated_at",
    "secret_prefix",
}  # fmt: skip
DELIVERY_FIELDS = {
    "id", "endpoint_id", "event_type", "payload_json", "attempt_count", "next_attempt_at",
    "last_status_code", "last_error", "delivered_at", "created_at", "event_id", "status", "log",
}  # fmt: skip


def _rfc3339(text: str) -> datetime:
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert parsed.utcoffset() == timedelta(0), text
    return parsed


def test_endpoint_routes_answer_keysat_s_shapes(tmp_path):
    with _daemon(tmp_path) as daemon:
        url = "https://crm.example.com/hooks/keysat"
        created = must(admin(daemon, "POST", "/v1/admin/webhook-endpoints", {"url": url}), 200)
        assert set(created) == ENDPOINT_FIELDS | {"secret"}
        secret = created["secret"]
        assert len(bytes.fromhex(secret)) == 32
        assert created["url"] == url
        assert created["event_types"] == ["*"]  # Keysat's default: every event
        assert created["active"] is True and created["description"] == ""
        assert created["secret_prefix"] == secret[:4]
        _rfc3339(created["created_at"])
        assert created["updated_at"] == created["created_at"]

        listed = must(admin(daemon, "GET", "/v1/admin/webhook-endpoints"), 200)
        assert list(listed) == ["endpoints"]
        shown = {k: v for k, v in created.items() if k != "secret"}
        assert listed["endpoints"] == [shown]  # the secret is never listed
        second = _endpoint(daemon, "https://shop.example.com/h", ["license.issued", "*"])
        assert second["event_types"] == ["license.issued", "*"]  # as given, as Keysat keeps it
        listed = must(admin(daemon, "GET", "/v1/admin/webhook-endpoints"), 200)
        assert [e["id"] for e in listed["endpoints"]] == [second["id"], created["id"]]

        time.sleep(1.1)  # updated_at has whole seconds
        off = _set_active(daemon, created["id"], False)
        assert set(off) == {"ok", "endpoint"} and off["ok"] is True
        assert off["endpoint"]["active"] is False
        assert off["endpoint"]["updated_at"] > created["updated_at"]
        assert off["endpoint"]["created_at"] == created["created_at"]
        listed = must(admin(daemon, "GET", "/v1/admin/webhook-endpoints"), 200)
        assert listed["endpoints"][1] == off["endpoint"]
        assert _set_active(daemon, created["id"], True)["endpoint"]["active"] is True

        deleted = must(admin(daemon, "DELETE", f"/v1/admin/webhook-endpoints/{created['id']}"), 200)
        assert deleted == {"ok": True, "deleted": created["id"]}
        listed = must(admin(daemon, "GET", "/v1/admin/webhook-endpoints"), 200)
        assert [e["id"] for e in listed["endpoints"]] == [second["id"]]

        before = db_dump(daemon)
        gone = f"/v1/admin/webhook-endpoints/{created['id']}"
        for method, path, body in (
            ("PATCH", f"{gone}/active", {"active": False}),
            ("DELETE", gone, None),
            ("POST", f"/v1/admin/webhook-deliveries/{created['id']}/retry", None),
        ):
            status, answer = admin(daemon, method, path, body)
            assert status == 404, answer
            assert answer["error"] == "not_found" and created["id"] in answer["message"]
        assert db_dump(daemon) == before


@pytest.mark.parametrize(
    ("method", "path", "body", "named"),
    [
        ("POST", "/v1/admin/webhook-endpoints", {"url": "https://a.example/h",
         "event_types": ["invoice.settled"]}, "'event_types[0]'"),
        ("POST", "/v1/admin/webhook-endpoints", {"url": "https://a.example/h",
         "event_types": []}, "event_types"),
        ("POST", "/v1/admin/webhook-endpoints", {"url": "ftp://a.example/h"}, "url"),
        ("POST", "/v1/admin/webhook-endpoints", {"url": "https://a.example/h",
         "enabled": True}, "enabled"),
        ("POST", "/v1/admin/webhook-endpoints", {"url": "https://a.example/h",
         "secret": "short"}, "secret"),
        ("PATCH", "/v1/admin/webhook-endpoints/{id}/active", {"active": "yes"}, "active"),
        ("PATCH", "/v1/admin/webhook-endpoints/{id}/active", {"enabled": False}, "enabled"),
        ("GET", "/v1/admin/webhook-deliveries?status=dead", None, "status"),
        ("GET", "/v1/admin/webhook-deliveries?include_secret=true", None, "include_secret"),
        ("GET", "/v1/admin/webhook-endpoints?include_secret=true", None, "include_secret"),
        ("POST", "/v1/admin/webhook-deliveries/{id}/retry", {"now": 1}, "'now'"),
    ],
)  # fmt: skip
def test_bad_webhook_input_is_refused_by_name_and_nothing_is_written(
    tmp_path, method, path, body, named
):
    with _daemon(tmp_path) as daemon:
        endpoint = _endpoint(daemon, "https://crm.example.com/h", ["license.issued"])
        before = db_dump(daemon)
        status, answer = admin(daemon, method, path.replace("{id}", endpoint["id"]), body)
        assert status == 400, answer
        assert answer["error"] == "bad_request" and named in answer["message"], answer
        assert db_dump(daemon) == before
        listed = must(admin(daemon, "GET", "/v1/admin/webhook-endpoints"), 200)
        assert listed["endpoints"][0]["active"] is True


def test_each_event_s_body_is_keysat_s_envelope_field_by_field(tmp_path):
    with Receiver() as receiver, _daemon(tmp_path) as daemon:
        endpoint = _endpoint(daemon, receiver.url, ["*"])
        product = make_product(daemon, seats=2)
        [product_id] = rows(daemon, "SELECT id FROM products WHERE slug = ?", product)[0]
        issued = issue(daemon, product, buyer_email="ada@example.org")
        license_id, key = issued["license_id"], issued["license_key"]
        seat = {"key": key, "fingerprint": "fp-1"}
        machine = {**seat, "hostname": "studio", "platform": "linux"}
        activated = must(daemon.request("POST", "/v1/machines/activate", machine), 200)
        must(daemon.request("POST", "/v1/machines/deactivate", seat), 200)
        base = f"/v1/admin/licenses/{license_id}"
        must(admin(daemon, "POST", f"{base}/suspend", {}), 200)
        must(admin(daemon, "POST", f"{base}/unsuspend"), 200)
        must(admin(daemon, "POST", f"{base}/revoke", {"reason": "refund"}), 200)
        code = {"code": "GIFT-1", "kind": "free_license"}
        must(admin(daemon, "POST", "/v1/admin/discount-codes", code), 200)
        redeemed = must(
            daemon.request("POST", "/v1/redeem", {"product": product, "code": "GIFT-1"}), 200
        )
        seen = receiver.wait_for(9)
        bodies = [s.event for s in seen]
        assert [list(b) for b in bodies] == [["event_type", "timestamp", "data"]] * 9
        for s, body in zip(seen, bodies, strict=True):
            assert s.headers["X-Keysat-Event"] == body["event_type"]
            assert s.signed_by(endpoint["secret"])
            assert abs(_rfc3339(body["timestamp"]).timestamp() - time.time()) < 60
        [policy_id] = rows(daemon, "SELECT policy_id FROM licenses WHERE id = ?", license_id)[0]
        fp_hash = hashlib.sha256(b"fp-1").hexdigest()
        [code_id] = rows(daemon, "SELECT id FROM discount_codes WHERE code = 'GIFT-1'")[0]
        [price] = rows(daemon, "SELECT price_sats FROM policies WHERE id = ?", policy_id)[0]
        assert bodies[0]["data"]["product"]["id"] == product_id
        assert [(b["event_type"], b["data"]) for b in bodies[1:]] == [
            (
                "license.issued",
                {
                    "license_id": license_id,
                    "product_id": product_id,
                    "invoice_id": None,
                    "policy_id": policy_id,
                    "is_trial": False,
                    "expires_at": None,
                    "entitlements": [],
                    "source": "admin_issue",
                    "license_key": key,
                    "buyer_email": "ada@example.org",
                },
            ),
            (
                "machine.activated",
                {
                    "license_id": license_id,
                    "machine_id": activated["machine_id"],
                    "fingerprint_hash": fp_hash,
                    "hostname": "studio",
                    "platform": "linux",
                },
            ),
            (
                "machine.deactivated",
                {
                    "license_id": license_id,
                    "machine_id": activated["machine_id"],
                    "reason": "client_requested",
                },
            ),
            (
                "license.suspended",
                {
                    "license_id": license_id,
                    "product_id": product_id,
                    "previous_status": "active",
                    "status": "suspended",
                    "reason": "admin suspend",
                },
            ),
            (
                "license.unsuspended",
                {
                    "license_id": license_id,
                    "product_id": product_id,
                    "previous_status": "suspended",
                    "status": "active",
                },
            ),
            (
                "license.revoked",
                {
                    "license_id": license_id,
                    "product_id": product_id,
                    "previous_status": "active",
                    "status": "revoked",
                    "reason": "refund",
                },
            ),
            (
                "license.issued",
                {
                    "license_id": redeemed["license_id"],
                    "product_id": product_id,
                    "invoice_id": redeemed["invoice_id"],
                    "policy_id": policy_id,
                    "is_trial": False,
                    "expires_at": None,
                    "entitlements": [],
                    "source": "purchase",
                    "license_key": redeemed["license_key"],
                    "buyer_email": None,
                },
            ),
            (
                "code.redeemed",
                {
                    "redemption_id": redeemed["redemption_id"],
                    "code_id": code_id,
                    "code": "GIFT-1",
                    "license_id": redeemed["license_id"],
                    "product_id": product_id,
                    "invoice_id": redeemed["invoice_id"],
                    "discount_applied_sats": price,
                    "base_price_sats": price,
                    "final_price_sats": 0,
                },
            ),
        ]
        assert bodies[0]["event_type"] == "product.created"
        listed = must(admin(daemon, "GET", "/v1/admin/products"), 200)["products"]
        assert [bodies[0]["data"]["product"]] == [p for p in listed if p["id"] == product_id]


def test_the_delivery_log_and_retry_answer_keysat_s_rows(tmp_path):
    env = {**FAST, "KEYSMITH_WEBHOOK_MAX_ATTEMPTS": "2"}
    with Receiver(mode="down") as receiver, DaemonProc(tmp_path, env=env) as daemon:
        endpoint = _endpoint(daemon, receiver.url, ["license.issued"])
        issue(daemon, make_product(daemon))
        [failed] = _settled(daemon, endpoint["id"], 1)
        [sent] = {s.body for s in receiver.seen}
        assert set(failed) == DELIVERY_FIELDS
        assert failed["id"] == receiver.seen[0].headers["X-Keysat-Delivery"]
        assert failed["endpoint_id"] == endpoint["id"]
        assert failed["event_type"] == "license.issued"
        assert failed["payload_json"].encode() == sent  # the very bytes signed and sent
        assert (failed["attempt_count"], failed["status"]) == (2, "failed")
        assert failed["next_attempt_at"] is None and failed["delivered_at"] is None
        assert failed["last_status_code"] == 503
        assert failed["last_error"] == "HTTP 503 Service Unavailable"
        _rfc3339(failed["created_at"])
        for status, found in (("failed", [failed]), ("all", [failed]), ("pending", [])):
            path = f"/v1/admin/webhook-deliveries?status={status}"
            assert must(admin(daemon, "GET", path), 200) == {"deliveries": found}
        assert must(admin(daemon, "GET", "/v1/admin/webhook-deliveries"), 200) == {
            "deliveries": [failed]
        }

        # Keysat re-queues: the attempts counted afresh, no last code or error, due now.
        retried = must(
            admin(daemon, "POST", f"/v1/admin/webhook-deliveries/{failed['id']}/retry"), 200
        )
        assert set(retried) == DELIVERY_FIELDS
        assert (retried["attempt_count"], retried["status"]) == (0, "pending")
        assert retried["last_status_code"] is None and retried["last_error"] is None
        assert retried["delivered_at"] is None and retried["next_attempt_at"] is not None
        assert retried["log"] == failed["log"]  # the log keeps the attempts made
        receiver.mode = "ok"
        [arrived] = receiver.wait_for(1)
        assert arrived.headers["X-Keysat-Delivery"] == failed["id"]
        [delivered] = _settled(daemon, endpoint["id"], 1)
        assert (delivered["status"], delivered["attempt_count"]) == ("delivered", 1)
        assert (delivered["last_status_code"], delivered["last_error"]) == (200, None)
        _rfc3339(delivered["delivered_at"])
        # A delivered one may be sent again too, as in Keysat.
        again = must(
            admin(daemon, "POST", f"/v1/admin/webhook-deliveries/{failed['id']}/retry"), 200
        )
        assert (again["status"], again["delivered_at"]) == ("pending", None)
        receiver.wait_for(2)


def test_one_unreadable_stored_event_types_breaks_neither_a_listing_nor_a_change(tmp_path):
    with Receiver() as receiver, _daemon(tmp_path) as daemon:
        broken = _endpoint(daemon, receiver.url, ["license.issued"])
        kept = _endpoint(daemon, receiver.url, ["license.issued"])
        for stored in ("{not json", '{"license.issued": "*"}', "[1, 2]"):
            with sqlite3.connect(daemon.db_path) as conn:  # as an older version or a hand edit
                conn.execute(
                    "UPDATE webhook_endpoints SET event_types = ? WHERE id = ?",
                    (stored, broken["id"]),
                )
            listed = must(admin(daemon, "GET", "/v1/admin/webhook-endpoints"), 200)
            by_id = {e["id"]: e for e in listed["endpoints"]}
            assert by_id[broken["id"]]["event_types"] == []  # listed with what it hears
            assert by_id[kept["id"]]["event_types"] == ["license.issued"]
        # A change still commits, and its event goes to the endpoint that can be read.
        license_id = issue(daemon, make_product(daemon))["license_id"]
        [seen] = receiver.wait_for(1)
        assert seen.event["data"]["license_id"] == license_id
        assert [d["endpoint_id"] for d in _deliveries(daemon, kept["id"])] == [kept["id"]]
        assert _deliveries(daemon, broken["id"]) == []
        assert "cannot be shown" in daemon.log_text()


def test_two_daemons_on_one_database_deliver_each_event_once(tmp_path):
    # Issue 20, item 9: two daemons on one database both sent every delivery (20 events,
    # 40 POSTs, each delivery logging two `delivered` attempts). Each now claims a delivery
    # in the database (a lease) before sending it.
    events = 20
    # Each answer takes a while, so both senders find a delivery due while it is in flight.
    with Receiver(delay=0.3) as receiver, _daemon(tmp_path / "a") as first:
        db = first.db_path
        with _daemon(tmp_path / "b", db_path=db) as second:
            endpoint = _endpoint(first, receiver.url, ["license.issued"])
            product = make_product(second)
            issued = [issue((first, second)[n % 2], product)["license_id"] for n in range(events)]
            receiver.wait_for(events)
            _settled(first, endpoint["id"], events)
            time.sleep(2.0)  # a second sender's copy would arrive within a few polls
            seen = receiver.seen
            ids = [s.headers["X-Keysat-Delivery"] for s in seen]
            print(f"{events} events: {len(seen)} POSTs, {len(set(ids))} distinct deliveries")
            assert [s.event["data"]["license_id"] for s in seen] == issued
            assert len(ids) == len(set(ids)) == events
            attempts = rows(first, "SELECT delivery_id, status FROM webhook_attempts")
            assert sorted(attempts) == sorted((i, "delivered") for i in ids)
