"""Keysat's public routes that need no payment provider, over HTTP against the real daemon:
free purchases and their invoices, recovery, CORS for browser clients, the per-client rate
limits (behind a trusted proxy or not), and every unknown or mistyped field refused by name
with nothing written.
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
import uuid
from typing import Any

import pytest

from daemon.api import mount  # noqa: F401  (every handler module registers into the table)
from daemon.api.table import ENDPOINTS, Nothing, PemText
from daemon.console.web import CSP as CONSOLE_CSP
from tests.daemon_proc import DaemonProc
from tests.test_api_support import (
    admin,
    db_dump,
    issue,
    make_product,
    must,
    rows,
    serving_daemon,
    unique,
)

daemon = pytest.fixture(scope="module", name="daemon")(serving_daemon)


def _send(
    proc: DaemonProc, method: str, path: str, body: Any = None, headers: dict | None = None
) -> tuple[int, dict[str, str], Any]:
    """(status, headers, parsed body) — the headers are what these tests are about."""
    conn = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=10)
    try:
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers=headers or {})
        response = conn.getresponse()
        raw = response.read()
        return response.status, dict(response.getheaders()), json.loads(raw) if raw else None
    finally:
        conn.close()


def _free_tier(daemon) -> str:
    """A product whose default tier costs nothing."""
    return make_product(daemon, price_sats_override=0)


# ----- purchases that need no payment provider -----


def test_a_free_tier_is_bought_at_once_and_its_invoice_answers(daemon):
    product = _free_tier(daemon)
    bought = must(
        daemon.request("POST", "/v1/purchase", {"product": product, "buyer_email": "b@x.org"}),
        200,
    )
    assert bought["status"] == "settled" and bought["license_key"].startswith("LIC1-")
    assert (bought["amount_sats"], bought["base_price_sats"], bought["checkout_url"]) == (
        0,
        0,
        "",
    )
    # As Keysat fills them for a free purchase (purchase.rs, repo::create_free_invoice).
    assert bought["btcpay_invoice_id"] == f"free-{bought['invoice_id']}"
    license_row = must(admin(daemon, "GET", f"/v1/admin/licenses/{bought['license_id']}"), 200)
    assert license_row["metadata"] == {
        "source": "purchase",
        "btcpay_invoice_id": bought["btcpay_invoice_id"],
    }
    assert bought["poll_url"] == f"/v1/purchase/{bought['invoice_id']}"
    polled = must(daemon.request("GET", bought["poll_url"]), 200)
    assert polled == {
        "invoice_id": bought["invoice_id"],
        "status": "settled",
        "product_id": polled["product_id"],
        "amount_sats": 0,
        "license_id": bought["license_id"],
        "license_key": bought["license_key"],
    }
    answer = must(daemon.request("POST", "/v1/validate", {"key": bought["license_key"]}), 200)
    assert answer["ok"] is True
    [invoice] = rows(
        daemon,
        "SELECT provider, status, amount_sats, buyer_email FROM invoices WHERE id = ?",
        bought["invoice_id"],
    )
    assert invoice == ("free", "settled", 0, "b@x.org")


def test_a_code_that_takes_the_whole_price_buys_the_license_and_counts_a_use(daemon):
    product = make_product(daemon)  # 50,000 sats
    code = must(
        admin(
            daemon,
            "POST",
            "/v1/admin/discount-codes",
            {"code": unique("ALL"), "kind": "percent", "amount": 10_000, "max_uses": 1},
        ),
        200,
    )
    bought = must(
        daemon.request("POST", "/v1/purchase", {"product": product, "code": code["code"]}), 200
    )
    assert (bought["amount_sats"], bought["base_price_sats"], bought["discount_applied_sats"]) == (
        0,
        50_000,
        50_000,
    )
    [(uses,)] = rows(
        daemon, "SELECT count(*) FROM discount_redemptions WHERE code_id = ?", code["id"]
    )
    assert uses == 1
    before = db_dump(daemon)
    again = must(
        daemon.request("POST", "/v1/purchase", {"product": product, "code": code["code"]}), 400
    )
    assert again["message"].startswith("'code': code") and "its limit" in again["message"]
    assert db_dump(daemon) == before


def test_a_paid_purchase_is_refused_clearly_and_records_nothing(daemon):
    product = make_product(daemon)
    half = must(
        admin(
            daemon,
            "POST",
            "/v1/admin/discount-codes",
            {"code": unique("HALF"), "kind": "percent", "amount": 5000},
        ),
        200,
    )
    before = db_dump(daemon)
    for body in ({"product": product}, {"product": product, "code": half["code"]}):
        refused = must(daemon.request("POST", "/v1/purchase", body), 503)
        assert refused["error"] == "payment_not_configured"
        assert "no payment provider is configured" in refused["message"]
        assert "nothing was charged or recorded" in refused["message"]
    missing = must(daemon.request("GET", f"/v1/purchase/{uuid.uuid4()}"), 404)
    assert missing["error"] == "not_found"
    assert db_dump(daemon) == before


# ----- recovery -----


def test_recover_hands_back_the_key_for_the_invoice_and_its_email_in_any_case(daemon):
    product = _free_tier(daemon)
    bought = must(
        daemon.request(
            "POST", "/v1/purchase", {"product": product, "buyer_email": "Grace@Example.org"}
        ),
        200,
    )
    recovered = must(
        daemon.request(
            "POST",
            "/v1/recover",
            {"invoice_id": bought["invoice_id"], "buyer_email": "grace@EXAMPLE.org"},
        ),
        200,
    )
    assert recovered == {
        "ok": True,
        "invoice_id": bought["invoice_id"],
        "license_id": bought["license_id"],
        "license_key": bought["license_key"],
        "product_id": recovered["product_id"],
        "product_slug": product,
        "issued_at": recovered["issued_at"],
        "expires_at": None,
        "entitlements": [],
    }
    before = db_dump(daemon)
    wrong_email = must(
        daemon.request(
            "POST",
            "/v1/recover",
            {"invoice_id": bought["invoice_id"], "buyer_email": "mallory@example.org"},
        ),
        404,
    )
    wrong_invoice = must(
        daemon.request(
            "POST",
            "/v1/recover",
            {"invoice_id": str(uuid.uuid4()), "buyer_email": "grace@example.org"},
        ),
        404,
    )
    # One answer for both, so neither the invoice id nor the email can be probed alone.
    assert wrong_email == wrong_invoice
    assert db_dump(daemon) == before


# ----- CORS -----


def test_public_routes_allow_browsers_and_answer_the_preflight(daemon):
    status, headers, body = _send(
        daemon,
        "OPTIONS",
        "/v1/validate",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert (status, body) == (204, None)
    # Keysat's layer: any origin, method and header.
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert headers["Access-Control-Allow-Methods"] == "*"
    assert headers["Access-Control-Allow-Headers"] == "*"
    status, headers, _ = _send(
        daemon, "GET", "/v1/products", headers={"Origin": "https://app.example"}
    )
    assert (status, headers["Access-Control-Allow-Origin"]) == (200, "*")
    status, headers, _ = _send(
        daemon,
        "POST",
        "/v1/validate",
        {"key": "nonsense"},
        {"Origin": "https://app.example", "Content-Type": "application/json"},
    )
    assert (status, headers["Access-Control-Allow-Origin"]) == (200, "*")


def test_a_preflight_with_an_unknown_expect_gets_the_json_envelope(daemon):
    # Found by the fuzz: the preflight routes once lacked the daemon's Expect handler, and
    # aiohttp answered 417 in plain text.
    status, headers, body = _send(daemon, "OPTIONS", "/v1/validate", headers={"Expect": "0"})
    assert status == 417 and headers["Content-Type"].startswith("application/json")
    assert (body["ok"], body["error"]) == (False, "expectation_failed")


def test_admin_routes_answer_browsers_as_keysat_and_still_need_the_key(daemon):
    status, headers, _ = _send(
        daemon, "GET", "/v1/admin/products", headers={**daemon.admin_headers(), "Origin": "x"}
    )
    assert (status, headers["Access-Control-Allow-Origin"]) == (200, "*")
    status, headers, _ = _send(daemon, "OPTIONS", "/v1/admin/products", headers={"Origin": "x"})
    assert (status, headers["Access-Control-Allow-Methods"]) == (204, "*")
    # The preflight opens nothing: without the bearer key the route still refuses.
    status, headers, _ = _send(daemon, "GET", "/v1/admin/products", headers={"Origin": "x"})
    assert (status, headers["Access-Control-Allow-Origin"]) == (401, "*")


# ----- unknown and mistyped fields -----

# The routes with a JSON body model (those without one: tests/test_keysat_routes.py).
BODY_ROUTES = sorted({(e.method, e.path) for e in ENDPOINTS if e.body not in (Nothing, PemText)})


@pytest.mark.parametrize("method, path", BODY_ROUTES)
def test_an_unknown_field_is_refused_by_name_and_nothing_is_written(daemon, method, path):
    concrete = path.replace("{id}", str(uuid.uuid4()))
    send = admin if path.startswith("/v1/admin/") else lambda d, m, p, b: d.request(m, p, b)
    before = db_dump(daemon)
    refused = must(send(daemon, method, concrete, {"surprise_field": 1}), 400)
    assert refused == {
        "ok": False,
        "error": "bad_request",
        "message": "'surprise_field' is not a field of this request; nothing was written",
    }
    assert db_dump(daemon) == before


@pytest.mark.parametrize(
    "path, body, message",
    [
        (
            "/v1/admin/policies",
            {"product_slug": "x", "slug": "s", "name": "n", "duration_days": 30},
            "'duration_days' is not a field of this request; nothing was written",
        ),
        (
            "/v1/admin/policies",
            {"product_slug": "x", "slug": "s", "name": "n", "max_machines": -1},
            "'max_machines' must be between 0 and 10000",
        ),
        (
            "/v1/admin/policies",
            {"product_slug": "x", "slug": "s", "name": "n", "grace_seconds": "1d"},
            "'grace_seconds' must be an integer, got a string",
        ),
        (
            "/v1/admin/licenses",
            {"product_slug": "x", "is_trial": "yes"},
            "'is_trial' must be true or false, got a string",
        ),
        (
            "/v1/admin/licenses",
            {"product_slug": "x", "buyer_email": "not an email"},
            "'buyer_email' must be an email address",
        ),
        (
            "/v1/admin/discount-codes",
            {"code": "C1", "kind": "percent", "amount": 500, "max_uses": 0},
            "'max_uses' must be between 1 and 1000000000",
        ),
    ],
)
def test_a_mistyped_field_is_refused_by_name_and_nothing_is_written(daemon, path, body, message):
    before = db_dump(daemon)
    refused = must(admin(daemon, "POST", path, body), 400)
    assert refused["message"] == message
    assert db_dump(daemon) == before


# ----- rate limits -----


def _limited_daemon(tmp_path, proxies: str) -> DaemonProc:
    return DaemonProc(
        tmp_path, env={"KEYSMITH_RATE_LIMIT": "3", "KEYSMITH_TRUSTED_PROXIES": proxies}
    )


def test_validate_heartbeat_redeem_and_recover_are_limited_per_client(tmp_path):
    with _limited_daemon(tmp_path, "127.0.0.1/32") as proc:
        slug = make_product(proc)
        key = issue(proc, slug)["license_key"]
        calls = {
            "/v1/validate": ({"key": key}, 200),
            "/v1/machines/heartbeat": ({"key": key, "fingerprint": "fp"}, 200),
            "/v1/redeem": ({"product": slug, "code": "NO-SUCH"}, 429),
            "/v1/recover": ({"invoice_id": str(uuid.uuid4()), "email": "a@b.c"}, 429),
        }
        for path, (body, limited) in calls.items():
            for _ in range(3):
                status, _, answer = _send(proc, "POST", path, body)
                assert answer.get("reason") != "rate_limited", path
            status, headers, answer = _send(proc, "POST", path, body)
            # Keysat answers a limited validate or heartbeat 200 {ok: false, reason}.
            assert status == limited, path
            assert (answer["ok"], answer["reason"]) == (False, "rate_limited")
            assert int(headers["Retry-After"]) >= 1
            assert "Retry in" in answer["message"]
        # Each client behind the trusted proxy has its own allowance.
        status, _, answer = _send(
            proc, "POST", "/v1/validate", {"key": key}, {"X-Forwarded-For": "203.0.113.7"}
        )
        assert (status, answer["ok"]) == (200, True)
        # Unlimited routes stay open.
        assert _send(proc, "GET", "/v1/products")[0] == 200


def test_a_forwarded_address_from_an_untrusted_peer_is_ignored(tmp_path):
    with _limited_daemon(tmp_path, "10.0.0.0/8") as proc:
        for n in range(3):
            forwarded = {"X-Forwarded-For": f"198.51.100.{n}"}
            assert _send(proc, "POST", "/v1/validate", {"key": "x"}, forwarded)[0] == 200
        status, _, answer = _send(
            proc, "POST", "/v1/validate", {"key": "x"}, {"X-Forwarded-For": "198.51.100.99"}
        )
        assert (status, answer["reason"]) == (200, "rate_limited")


# ----- Keysat's /recover page for buyers -----


def _page(
    proc: DaemonProc, method: str, form: dict[str, str] | None = None, headers: dict | None = None
) -> tuple[int, dict[str, str], str]:
    """(status, headers, HTML) of /recover; a form is posted url-encoded, as a browser does."""
    conn = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=10)
    try:
        body = None if form is None else urllib.parse.urlencode(form).encode()
        sent = {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
        conn.request(method, "/recover", body=body, headers=sent)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode()
    finally:
        conn.close()


def test_the_recover_page_gives_a_buyer_the_key_under_the_consoles_csp(daemon):
    status, headers, html = _page(daemon, "GET")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert headers["Content-Security-Policy"] == CONSOLE_CSP
    assert headers["Cache-Control"] == "no-store"
    # Nothing the policy would block: no script, no inline style, the form posts to itself.
    assert "<script" not in html and "style" not in html
    assert '<form method="post" action="/recover">' in html
    assert 'name="invoice_id"' in html and 'name="email"' in html

    product = _free_tier(daemon)
    bought = must(
        daemon.request("POST", "/v1/purchase", {"product": product, "buyer_email": "Ann@x.org"}),
        200,
    )
    status, headers, html = _page(
        daemon, "POST", {"invoice_id": bought["invoice_id"], "email": "ann@X.org"}
    )
    assert status == 200 and headers["Content-Security-Policy"] == CONSOLE_CSP
    assert f"<pre>{bought['license_key']}</pre>" in html

    before = db_dump(daemon)
    wrong = {"invoice_id": bought["invoice_id"], "email": "someone@x.org"}
    status, _, html = _page(daemon, "POST", wrong)
    assert status == 404 and bought["license_key"] not in html
    assert "No license matches" in html
    # What was typed comes back escaped, never as markup.
    hostile = {"invoice_id": '"><b>x</b>', "email": "a@b.c"}
    status, _, html = _page(daemon, "POST", hostile)
    assert status == 400 and "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html
    status, _, html = _page(daemon, "POST", {**wrong, "coupon": "1"})
    assert status == 400 and "&#39;coupon&#39; is not a field" in html
    # A body that is not the form (found by schemathesis: a multipart without a boundary was
    # a 500) is refused with the page, naming the type it must be.
    for content_type in ("multipart/form-data", "application/json"):
        status, _, html = _page(daemon, "POST", wrong, {"Content-Type": content_type})
        assert status == 415 and "application/x-www-form-urlencoded" in html, content_type
    assert db_dump(daemon) == before


def test_the_recover_page_counts_in_the_recover_limit(tmp_path):
    with _limited_daemon(tmp_path, "127.0.0.1/32") as proc:
        form = {"invoice_id": str(uuid.uuid4()), "email": "a@b.c"}
        for _ in range(2):
            assert _page(proc, "POST", form)[0] == 404
        body = {"invoice_id": form["invoice_id"], "email": "a@b.c"}
        assert _send(proc, "POST", "/v1/recover", body)[0] == 404  # the third, shared
        status, headers, html = _page(proc, "POST", form)
        assert status == 429 and int(headers["Retry-After"]) >= 1
        assert "Too many recovery attempts" in html
        assert _send(proc, "POST", "/v1/recover", body)[0] == 429
