"""The HTTP layer under hostile clients, against the real daemon on loopback.

- deep free-form JSON is refused before anything is written, and a deep row already in the
  database (an older version, a hand edit) cannot take a listing down;
- a client that hangs up mid-body costs one concise log line, never a traceback;
- slow clients (slowloris headers, a trickled body) are cut off after the configured timeouts,
  while normal clients are served.
"""

from __future__ import annotations

import http.client
import json
import socket
import sqlite3
import time
import uuid
from contextlib import closing
from dataclasses import dataclass

import pytest

from daemon.licensing import inputs
from daemon.settings import DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_TIMEOUT, Settings
from tests.daemon_proc import DaemonProc
from tests.test_api_support import (
    admin,
    db_dump,
    issue,
    make_product,
    must,
    serving_daemon,
    unique,
)

daemon = pytest.fixture(scope="module", name="daemon")(serving_daemon)

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 2.0
# Each slow client trickles for up to this long; the daemon must cut it off well before.
TRICKLE_SECONDS = 12.0
TRICKLE_STEP = 0.25


def nested(depth: int) -> str:
    """A JSON object nested `depth` levels, built as text (json.dumps would recurse)."""
    return '{"a":' * (depth - 1) + "{}" + "}" * (depth - 1)


def raw_post(proc: DaemonProc, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=30)
    try:
        conn.request(
            "POST", path, body=body, headers={"Content-Type": "application/json", **headers}
        )
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


# ----- deep free-form JSON -----


def test_deep_metadata_is_refused_and_nothing_is_written(daemon):
    before = db_dump(daemon)
    slug = unique("deep")
    body = f'{{"slug":"{slug}","name":"Deep","price_sats":1,"metadata":{nested(975)}}}'
    status, answer = raw_post(daemon, "/v1/admin/products", body.encode(), daemon.admin_headers())
    assert status == 400, answer
    assert answer["ok"] is False and answer["error"] == "bad_request"
    assert "'metadata'" in answer["message"] and str(inputs.MAX_JSON_DEPTH) in answer["message"]
    assert db_dump(daemon) == before
    assert must(daemon.request("GET", "/v1/products"), 200)["products"] is not None
    must(admin(daemon, "GET", "/v1/admin/products"), 200)


def test_metadata_at_the_depth_limit_is_stored_and_listed(daemon):
    slug = unique("edge")
    body = (
        f'{{"slug":"{slug}","name":"Edge","price_sats":1,'
        f'"metadata":{nested(inputs.MAX_JSON_DEPTH)}}}'
    )
    status, answer = raw_post(daemon, "/v1/admin/products", body.encode(), daemon.admin_headers())
    assert status == 200, answer
    listed = {p["slug"]: p for p in must(daemon.request("GET", "/v1/products"), 200)["products"]}
    assert json.dumps(listed[slug]["metadata"], separators=(",", ":")) == nested(
        inputs.MAX_JSON_DEPTH
    )


@pytest.mark.parametrize(
    "metadata, fragment",
    [
        ({"blob": "x" * (inputs.MAX_JSON_BYTES + 1)}, "bytes"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_oversized_or_wrong_metadata_is_refused(daemon, metadata, fragment):
    before = db_dump(daemon)
    status, answer = admin(
        daemon,
        "POST",
        "/v1/admin/products",
        {"slug": unique("big"), "name": "Big", "price_sats": 1, "metadata": metadata},
    )
    assert status == 400, answer
    assert "'metadata'" in answer["message"] and fragment in answer["message"]
    assert db_dump(daemon) == before


def test_nan_is_not_json(daemon):
    before = db_dump(daemon)
    body = f'{{"slug":"{unique("nan")}","name":"N","price_sats":1,"metadata":{{"x":NaN}}}}'
    status, answer = raw_post(daemon, "/v1/admin/products", body.encode(), daemon.admin_headers())
    assert status == 400, answer
    assert "NaN" in answer["message"]
    assert db_dump(daemon) == before


def test_a_deep_row_in_the_database_does_not_break_the_listings(daemon):
    product_id = str(uuid.uuid4())
    slug = unique("handmade")
    with closing(sqlite3.connect(daemon.db_path, timeout=10)) as conn:
        conn.execute(
            "INSERT INTO products (id, slug, name, description, price_sats, metadata, active, "
            "created_at, updated_at) VALUES (?, ?, 'Hand', '', 1, ?, 1, 0, 0)",
            (product_id, slug, nested(975)),
        )
        conn.commit()
    public = must(daemon.request("GET", "/v1/products"), 200)["products"]
    listed = {p["slug"]: p for p in public}
    assert listed[slug]["metadata"] == {}
    admin_listed = {
        p["id"]: p for p in must(admin(daemon, "GET", "/v1/admin/products"), 200)["products"]
    }
    assert admin_listed[product_id]["metadata"] == {}
    assert must(daemon.request("GET", f"/v1/products/{slug}"), 200)["id"] == product_id
    warnings = [
        line for line in daemon.log_text().splitlines() if product_id in line and "WARN" in line
    ]
    # One line for the row, not one per listing: the catalogue is polled by every client.
    assert len(warnings) == 1, daemon.log_text()[-3000:]
    assert "metadata" in warnings[0]


# ----- bad stored JSON in other rows -----

BAD_STORED_JSON = {
    "deep": nested(975),  # valid JSON to SQLite (its limit is 1,000 levels), not to a listing
    "invalid": "{not json",
    "wrong kind": '{"pro": true}',  # an object where a list belongs (and a list for a detail)
}


@dataclass(frozen=True)
class BadRows:
    """A product whose policy, license and the license's audit entry hold bad stored JSON."""

    slug: str
    policy_id: str
    license_id: str
    license_key: str
    audit_id: int


@pytest.fixture(scope="module", params=BAD_STORED_JSON.values(), ids=BAD_STORED_JSON.keys())
def bad_rows(daemon, request) -> BadRows:
    """Written by hand past the schema's CHECKs, as an older version or a foreign tool could."""
    bad = request.param
    slug = make_product(daemon)
    issued = issue(daemon, slug)
    license_id = issued["license_id"]
    with closing(sqlite3.connect(daemon.db_path, timeout=10)) as conn:
        conn.execute("PRAGMA ignore_check_constraints = ON")
        (policy_id,) = conn.execute(
            "SELECT pol.id FROM policies AS pol JOIN products AS p ON p.id = pol.product_id "
            "WHERE p.slug = ?",
            (slug,),
        ).fetchone()
        conn.execute("UPDATE policies SET entitlements = ? WHERE id = ?", (bad, policy_id))
        conn.execute("UPDATE licenses SET entitlements = ? WHERE id = ?", (bad, license_id))
        detail = "[1, 2]" if bad.startswith('{"pro"') else bad
        (audit_id,) = conn.execute(
            "UPDATE audit_log SET detail = ? WHERE subject = ? RETURNING id",
            (detail, f"license:{license_id}"),
        ).fetchone()
        conn.commit()
    return BadRows(slug, policy_id, license_id, issued["license_key"], audit_id)


def test_bad_policy_entitlements_do_not_break_the_public_policy_listing(daemon, bad_rows):
    public = must(daemon.request("GET", f"/v1/products/{bad_rows.slug}/policies"), 200)
    assert [p["entitlements"] for p in public["policies"]] == [[]]


def test_bad_policy_entitlements_do_not_break_the_admin_policy_listing(daemon, bad_rows):
    path = f"/v1/admin/policies?product_slug={bad_rows.slug}"
    listed = must(admin(daemon, "GET", path), 200)["policies"]
    assert [(p["id"], p["entitlements"]) for p in listed] == [(bad_rows.policy_id, [])]


def test_bad_license_entitlements_do_not_break_the_license_listing(daemon, bad_rows):
    listed = must(admin(daemon, "GET", "/v1/admin/licenses?limit=1000"), 200)["licenses"]
    assert {lic["id"]: lic for lic in listed}[bad_rows.license_id]["entitlements"] == []
    one = must(admin(daemon, "GET", f"/v1/admin/licenses/{bad_rows.license_id}"), 200)
    assert one["entitlements"] == []


def test_a_bad_audit_detail_does_not_break_the_audit_log(daemon, bad_rows):
    path = f"/v1/admin/audit?subject=license:{bad_rows.license_id}"
    entries = must(admin(daemon, "GET", path), 200)["entries"]
    assert {e["id"]: e for e in entries}[bad_rows.audit_id]["detail"] == {}


def test_bad_license_entitlements_still_validate_with_none(daemon, bad_rows):
    answer = must(daemon.request("POST", "/v1/validate", {"key": bad_rows.license_key}), 200)
    assert answer["ok"] is True and answer["entitlements"] == []


def test_a_license_issued_from_a_bad_policy_gets_no_entitlements(daemon, bad_rows):
    assert issue(daemon, bad_rows.slug)["entitlements"] == []


def test_each_bad_row_is_warned_about_once(daemon, bad_rows):
    for _ in range(2):  # listed again: still one line per row, the catalogue is polled a lot
        must(daemon.request("GET", f"/v1/products/{bad_rows.slug}/policies"), 200)
        must(admin(daemon, "GET", f"/v1/admin/licenses/{bad_rows.license_id}"), 200)
        must(admin(daemon, "GET", f"/v1/admin/audit?subject=license:{bad_rows.license_id}"), 200)
    log = daemon.log_text().splitlines()
    for row_id, column in (
        (bad_rows.policy_id, "entitlements"),
        (bad_rows.license_id, "entitlements"),
        (bad_rows.audit_id, "detail"),
    ):
        warned = [
            line for line in log if "WARN" in line and f" {row_id}: its stored {column}" in line
        ]
        assert len(warned) == 1, (row_id, column, daemon.log_text()[-3000:])
        assert "The row is unchanged" in warned[0]


# ----- a client that hangs up mid-body -----


def test_a_client_hanging_up_mid_body_costs_one_concise_line(daemon):
    must(daemon.request("GET", "/healthz"), 200)
    marker = len(daemon.log_text())
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n" + b'{"key": "LIC1-'
        )
        time.sleep(0.3)  # the handler is now waiting for the rest of the body
    # The daemon notices the hang-up when the socket closes; wait for its log to settle.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(daemon.log_text()) == marker:
        time.sleep(0.05)
    time.sleep(0.5)
    new = daemon.log_text()[marker:]
    lines = [line for line in new.splitlines() if line.strip()]
    assert "Traceback" not in new, new
    assert len(lines) <= 1, new
    assert all(len(line) < 400 for line in lines), new
    metrics = must(daemon.request("GET", "/metrics"), 200)
    assert 'method="POST",route="/v1/validate",status="499"' in metrics


# ----- slow clients -----


@pytest.fixture(scope="module")
def impatient(tmp_path_factory):
    env = {
        "KEYSMITH_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
        "KEYSMITH_BODY_TIMEOUT": str(BODY_TIMEOUT),
    }
    with DaemonProc(tmp_path_factory.mktemp("impatient"), env=env) as proc:
        yield proc


def trickle(sockets: list[socket.socket], chunks: list[bytes]) -> dict[int, bytes]:
    """Send the next chunk on every open socket each step until the server closes them all or
    TRICKLE_SECONDS pass; returns what each closed socket received, by index."""
    closed: dict[int, bytes] = {}
    for sock in sockets:
        sock.setblocking(False)
    deadline = time.monotonic() + TRICKLE_SECONDS
    step = 0
    while len(closed) < len(sockets) and time.monotonic() < deadline:
        for index, sock in enumerate(sockets):
            if index in closed:
                continue
            try:
                received = sock.recv(65536)
            except BlockingIOError:
                received = None
            except OSError:
                received = b""
            if received is not None:
                closed[index] = received
                continue
            try:
                sock.send(chunks[step % len(chunks)])
            except OSError:
                closed[index] = b""
        step += 1
        time.sleep(TRICKLE_STEP)
    return closed


def test_slowloris_headers_are_cut_off_and_normal_clients_are_served(impatient):
    sockets = [socket.create_connection(("127.0.0.1", impatient.port)) for _ in range(6)]
    try:
        for sock in sockets:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        # A normal client is served while the slow ones hold their connections.
        must(impatient.request("GET", "/healthz"), 200)
        closed = trickle(sockets, [b"X-Slow: 1\r\n"])
    finally:
        for sock in sockets:
            sock.close()
    assert len(closed) == len(sockets), f"still open after {TRICKLE_SECONDS} s: {closed}"
    must(impatient.request("GET", "/healthz"), 200)


def test_a_trickled_body_is_cut_off(impatient):
    sockets = [socket.create_connection(("127.0.0.1", impatient.port)) for _ in range(3)]
    try:
        for sock in sockets:
            sock.sendall(
                b"POST /v1/validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 4000\r\n\r\n"
            )
        closed = trickle(sockets, [b" "])
    finally:
        for sock in sockets:
            sock.close()
    assert len(closed) == len(sockets), f"still open after {TRICKLE_SECONDS} s: {closed}"
    answered = [data for data in closed.values() if data]
    for data in answered:
        assert data.startswith(b"HTTP/1.1 408"), data[:200]
    # A normal request with a body, on a keep-alive connection used twice, still works.
    conn = http.client.HTTPConnection("127.0.0.1", impatient.port, timeout=10)
    try:
        for _ in range(2):
            conn.request("POST", "/v1/validate", body=b'{"key": "nope"}')
            response = conn.getresponse()
            assert response.status == 200
            assert json.loads(response.read())["reason"] == "bad_format"
    finally:
        conn.close()


@pytest.mark.parametrize("raw", ["0", "-1", "601", "nan", "ten"])
@pytest.mark.parametrize("variable", ["KEYSMITH_HEADER_TIMEOUT", "KEYSMITH_BODY_TIMEOUT"])
def test_malformed_timeouts_are_named(variable, raw):
    settings, errors = Settings.lenient({variable: raw})
    assert [e.variable for e in errors] == [variable]
    assert "number of seconds" in str(errors[0])
    assert (settings.header_timeout, settings.body_timeout) == (
        DEFAULT_HEADER_TIMEOUT,
        DEFAULT_BODY_TIMEOUT,
    )


def test_timeouts_are_read():
    settings = Settings.from_env({"KEYSMITH_HEADER_TIMEOUT": "2.5", "KEYSMITH_BODY_TIMEOUT": "7"})
    assert (settings.header_timeout, settings.body_timeout) == (2.5, 7.0)
