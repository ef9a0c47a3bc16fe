"""Keysat's contract route by route (issue 21), over HTTP against the real daemon: every route
declares its query and body, even when it takes none, and refuses the rest by name with
nothing written.
"""

from __future__ import annotations

import http.client
import json
import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from keysat_licensing_client import Client, PublicKey, Verifier

from daemon.api import mount  # noqa: F401  (every handler module registers into the table)
from daemon.api.table import ENDPOINTS, Nothing
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


def _concrete(path: str) -> str:
    for name in ("{id}", "{invoice_id}"):
        path = path.replace(name, str(uuid.uuid4()))
    return path.replace("{slug}", "some-product")


def _send(daemon, method: str, path: str, body=None):
    if path.startswith("/v1/admin/"):
        return admin(daemon, method, path, body)
    return daemon.request(method, path, body)


# ----- undeclared query and body -----

NO_QUERY = sorted((e.method, e.path) for e in ENDPOINTS if e.query is Nothing)
NO_BODY = sorted((e.method, e.path) for e in ENDPOINTS if e.body is Nothing)


@pytest.mark.parametrize("method, path", NO_QUERY)
def test_a_query_parameter_a_route_does_not_take_is_refused_by_name(daemon, method, path):
    before = db_dump(daemon)
    refused = must(_send(daemon, method, _concrete(path) + "?zzz=1"), 400)
    assert refused["error"] == "bad_request"
    assert refused["message"].startswith("query parameter 'zzz' is not a field"), refused
    assert db_dump(daemon) == before


@pytest.mark.parametrize("method, path", NO_BODY)
def test_a_body_a_route_does_not_take_is_refused_by_name(daemon, method, path):
    before = db_dump(daemon)
    refused = must(_send(daemon, method, _concrete(path), {"zzz": 1}), 400)
    assert refused["message"] == "'zzz' is not a field of this request; nothing was written"
    assert db_dump(daemon) == before


def test_the_issue_s_ignored_requests_are_refused_with_nothing_changed(daemon):
    product = make_product(daemon)
    code = must(
        admin(
            daemon,
            "POST",
            "/v1/admin/discount-codes",
            {"code": unique("C"), "kind": "percent", "amount": 500, "product_slug": product},
        ),
        200,
    )
    hook = must(
        admin(daemon, "POST", "/v1/admin/webhook-endpoints", {"url": "https://a.example/h"}), 200
    )
    license_id = issue(daemon, product)["license_id"]
    must(admin(daemon, "POST", f"/v1/admin/licenses/{license_id}/suspend", {}), 200)
    before = db_dump(daemon)
    for method, path, body, named in [
        ("GET", "/v1/admin/webhook-endpoints?include_secret=true", None, "'include_secret'"),
        ("DELETE", f"/v1/admin/discount-codes/{code['id']}?zzz=1", None, "'zzz'"),
        ("DELETE", f"/v1/admin/webhook-endpoints/{hook['id']}?zzz=1", None, "'zzz'"),
        ("POST", f"/v1/admin/licenses/{license_id}/unsuspend", {"reason": "x"}, "'reason'"),
        ("POST", f"/v1/admin/webhook-deliveries/{uuid.uuid4()}/retry", {"now": True}, "'now'"),
    ]:
        refused = must(admin(daemon, method, path, body), 400)
        assert named in refused["message"], (path, refused)
    assert _but_the_sender_s(db_dump(daemon)) == _but_the_sender_s(before)
    assert rows(daemon, "SELECT status FROM licenses WHERE id = ?", license_id) == [("suspended",)]


def _but_the_sender_s(dump: str) -> str:
    """The dump without the delivery tables, which the webhook sender writes in the background
    (its attempts at the endpoints made here and by earlier tests) whatever the requests do."""
    kept, skipping = [], False
    for line in dump.splitlines():
        if line.startswith("-- "):
            skipping = line.startswith(("-- webhook_deliveries ", "-- webhook_attempts "))
        if not skipping:
            kept.append(line)
    return "\n".join(kept)


# ----- rate-limited validate and heartbeat, with the published client -----


def test_a_rate_limited_validate_or_heartbeat_is_a_reason_the_published_client_reads(tmp_path):
    with DaemonProc(tmp_path, env={"KEYSMITH_RATE_LIMIT": "2"}) as proc:
        key = issue(proc, make_product(proc))["license_key"]
        client = Client(proc.url, timeout=10)
        client.activate(key, "fp-1")
        assert [client.validate(key).ok for _ in range(2)] == [True, True]
        limited = client.validate(key)
        assert (limited.ok, limited.reason) == (False, "rate_limited")
        assert [client.heartbeat(key, "fp-1").ok for _ in range(2)] == [True, True]
        beat = client.heartbeat(key, "fp-1")
        assert (beat.ok, beat.reason) == (False, "rate_limited")


# ----- PATCH: null clears -----


def test_an_explicit_null_clears_what_keysat_clears_and_is_audited(daemon):
    catalog = [{"slug": "pro", "name": "Pro"}]
    body = {"slug": unique("np"), "name": "N", "price_sats": 1000, "metadata": {"a": 1}}
    product = must(admin(daemon, "POST", "/v1/admin/products", body), 200)
    path = f"/v1/admin/products/{product['id']}"
    must(admin(daemon, "PATCH", path, {"entitlements_catalog": catalog}), 200)
    cleared = must(
        admin(daemon, "PATCH", path, {"entitlements_catalog": None, "metadata": None}), 200
    )
    assert (cleared["entitlements_catalog"], cleared["metadata"]) == ([], {})
    assert rows(
        daemon, "SELECT entitlements_catalog, metadata FROM products WHERE id = ?", product["id"]
    ) == [("[]", "{}")]
    [(detail,)] = rows(
        daemon,
        "SELECT detail FROM audit_log WHERE subject = ? ORDER BY id DESC LIMIT 1",
        f"product:{product['id']}",
    )
    assert '"fields": ["entitlements_catalog", "metadata"]' in detail
    # Absent stays as it is.
    must(admin(daemon, "PATCH", path, {"metadata": {"b": 2}}), 200)
    kept = must(admin(daemon, "PATCH", path, {"name": "M"}), 200)
    assert kept["metadata"] == {"b": 2}
    # price_sats_override null: the policy follows the product's price again.
    policy = must(
        admin(
            daemon,
            "POST",
            "/v1/admin/policies",
            {"product_slug": body["slug"], "slug": "p", "name": "P", "price_sats_override": 5},
        ),
        200,
    )
    followed = must(
        admin(daemon, "PATCH", f"/v1/admin/policies/{policy['id']}", {"price_sats_override": None}),
        200,
    )
    assert (followed["price_sats_override"], followed["price_sats"]) == (None, 1000)


# ----- recover and redeem in Keysat's fields -----


def test_recover_takes_keysat_s_email_and_answers_keysat_s_fields(daemon):
    product = make_product(daemon, price_sats_override=0, entitlements=[])
    bought = must(
        daemon.request("POST", "/v1/purchase", {"product": product, "buyer_email": "g@x.org"}), 200
    )
    recovered = must(
        daemon.request(
            "POST", "/v1/recover", {"invoice_id": bought["invoice_id"], "email": "G@x.org"}
        ),
        200,
    )
    [(product_id,)] = rows(
        daemon, "SELECT product_id FROM licenses WHERE id = ?", bought["license_id"]
    )
    assert recovered["product_id"] == product_id
    assert (recovered["license_id"], recovered["license_key"]) == (
        bought["license_id"],
        bought["license_key"],
    )
    assert (recovered["expires_at"], recovered["entitlements"]) == (None, [])
    assert recovered["issued_at"].endswith("Z") and recovered["issued_at"][:4].isdigit()
    before = db_dump(daemon)
    both = {"invoice_id": bought["invoice_id"], "email": "g@x.org", "buyer_email": "g@x.org"}
    for body in (both, {"invoice_id": bought["invoice_id"]}):
        refused = must(daemon.request("POST", "/v1/recover", body), 400)
        assert "'email' is required" in refused["message"], refused
    assert db_dump(daemon) == before


def test_redeem_issues_under_the_named_tier_and_unknown_product_or_tier_is_404(daemon):
    product = make_product(daemon)
    must(
        admin(
            daemon,
            "POST",
            "/v1/admin/policies",
            {"product_slug": product, "slug": "pro", "name": "Pro", "max_machines": 5},
        ),
        200,
    )
    must(
        admin(
            daemon,
            "POST",
            "/v1/admin/policies",
            {"product_slug": product, "slug": "secret", "name": "S", "public": False},
        ),
        200,
    )
    code = unique("FREE").upper()
    body = {"code": code, "kind": "free_license", "amount": 0, "product_slug": product}
    must(admin(daemon, "POST", "/v1/admin/discount-codes", body), 200)
    before = db_dump(daemon)
    for request, status in [
        ({"product": "no-such-product", "code": code}, 404),
        ({"product": product, "code": code, "policy_slug": "no-such-tier"}, 404),
        ({"product": product, "code": code, "policy_slug": "secret"}, 400),
    ]:
        must(daemon.request("POST", "/v1/redeem", request), status)
    assert db_dump(daemon) == before
    redeemed = must(
        daemon.request(
            "POST", "/v1/redeem", {"product": product, "code": code, "policy_slug": "pro"}
        ),
        200,
    )
    assert rows(
        daemon,
        "SELECT pol.slug FROM licenses AS l JOIN policies AS pol ON pol.id = l.policy_id "
        "WHERE l.id = ?",
        redeemed["license_id"],
    ) == [("pro",)]


# ----- statuses as Keysat answers them -----


@pytest.mark.parametrize(
    "path, listed, most",
    [
        ("/v1/admin/licenses", "licenses", 1000),
        ("/v1/admin/audit", "entries", 1000),
        ("/v1/admin/machines", "machines", 5000),
        ("/v1/admin/webhook-deliveries", "deliveries", 500),
    ],
)
def test_a_limit_out_of_range_is_clamped_as_keysat_does(daemon, path, listed, most):
    for limit in (most + 1, 10**9, 0, -5):
        assert listed in must(admin(daemon, "GET", f"{path}?limit={limit}"), 200)
    refused = must(admin(daemon, "GET", f"{path}?limit=many"), 400)
    assert "'limit' must be an integer" in refused["message"]


def test_the_limit_is_clamped_not_ignored(daemon):
    product = make_product(daemon)
    for _ in range(2):
        issue(daemon, product)
    assert len(must(admin(daemon, "GET", "/v1/admin/licenses?limit=0"), 200)["licenses"]) == 1
    assert len(must(admin(daemon, "GET", "/v1/admin/audit?limit=-3"), 200)["entries"]) == 1


ID_ROUTES = sorted((e.method, e.path) for e in ENDPOINTS if "{id}" in e.path)


@pytest.mark.parametrize("method, path", ID_ROUTES)
def test_an_id_that_is_no_uuid_names_nothing_404(daemon, method, path):
    endpoint = next(e for e in ENDPOINTS if (e.method, e.path) == (method, path))
    body = None if endpoint.body is Nothing else {}
    status, answer = _send(daemon, method, path.replace("{id}", "not-a-uuid"), body)
    # A body model may refuse `{}` first (a required field); never a 400 for the id.
    assert status in (404, 400), answer
    if status == 400:
        assert "not-a-uuid" not in answer["message"] and "'id'" not in answer["message"]
    else:
        assert answer["error"] == "not_found" and "not-a-uuid" in answer["message"]


@pytest.mark.parametrize("path", sorted({e.path for e in ENDPOINTS if e.tag == "admin"}))
def test_every_admin_route_answers_a_preflight_as_keysat_s_layer(daemon, path):
    status, headers, _ = _raw(daemon, "OPTIONS", _concrete(path), {"Origin": "https://x.example"})
    assert status == 204
    assert {h: headers[h] for h in ALLOWED} == dict.fromkeys(ALLOWED, "*")


ALLOWED = (
    "Access-Control-Allow-Origin",
    "Access-Control-Allow-Methods",
    "Access-Control-Allow-Headers",
)


def _raw(daemon, method: str, path: str, headers: dict):
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=10)
    try:
        conn.request(method, path, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status, dict(response.getheaders()), None
    finally:
        conn.close()


# ----- shapes and the payment-free routes Keysmith lacked -----


def test_the_service_and_issuer_key_answer_keysat_s_fields(daemon):
    info = must(daemon.request("GET", "/"), 200)
    issuer = must(daemon.request("GET", "/v1/issuer/public-key"), 200)
    assert (info["key_algorithm"], info["key_format_version"]) == ("ed25519", 2)
    assert issuer == {
        "public_key_pem": info["public_key_pem"],
        "key_algorithm": "ed25519",
        "key_format_version": 2,
    }


def test_the_operator_name_is_set_shown_by_the_root_and_cleared(daemon):
    path = "/v1/admin/settings/operator-name"
    set_ = must(admin(daemon, "POST", path, {"name": "  Ada's Software  "}), 200)
    assert set_ == {"ok": True, "operator_name": "Ada's Software"}
    assert must(daemon.request("GET", "/"), 200)["operator"] == "Ada's Software"
    shown = must(admin(daemon, "GET", path), 200)
    assert shown == {
        "stored": "Ada's Software",
        "effective": "Ada's Software",
        "fallback_env": None,
    }
    assert rows(daemon, "SELECT value FROM settings WHERE key = 'operator_name'") == [
        ("Ada's Software",)
    ]
    assert must(admin(daemon, "POST", path, {"name": " "}), 200)["operator_name"] is None
    assert must(daemon.request("GET", "/"), 200)["operator"] is None
    assert rows(daemon, "SELECT count(*) FROM settings WHERE key = 'operator_name'") == [(0,)]
    before = db_dump(daemon)
    assert "'title'" in must(admin(daemon, "POST", path, {"title": "x"}), 400)["message"]
    assert db_dump(daemon) == before


def test_db_info_counts_what_the_database_holds(daemon):
    product = make_product(daemon)
    issue(daemon, product)
    info = must(admin(daemon, "GET", "/v1/admin/db-info"), 200)
    assert info["db_path"] == str(daemon.db_path)
    assert info["db_size_bytes"] == daemon.db_path.stat().st_size
    assert info["last_write_at"].endswith("Z")
    expected = {
        "products": "SELECT count(*) FROM products",
        "licenses_total": "SELECT count(*) FROM licenses",
        "audit_log": "SELECT count(*) FROM audit_log",
    }
    for name, sql in expected.items():
        assert [(info["counts"][name],)] == rows(daemon, sql), name


def test_the_admin_machine_list_answers_keysat_s_names_and_product_filters(daemon):
    product = make_product(daemon, seats=2)
    other = make_product(daemon)
    issued = issue(daemon, product, buyer_email="m@x.org")
    must(
        daemon.request(
            "POST", "/v1/machines/activate", {"key": issued["license_key"], "fingerprint": "fp-9"}
        ),
        200,
    )
    issue_other = issue(daemon, other)["license_key"]
    must(
        daemon.request("POST", "/v1/machines/activate", {"key": issue_other, "fingerprint": "x"}),
        200,
    )
    [(product_id,)] = rows(daemon, "SELECT id FROM products WHERE slug = ?", product)
    by_slug = must(admin(daemon, "GET", f"/v1/admin/machines?product_slug={product}"), 200)
    by_id = must(admin(daemon, "GET", f"/v1/admin/machines?product_id={product_id}"), 200)
    assert by_slug == by_id
    [machine] = by_slug["machines"]
    assert {k: machine[k] for k in KEYSAT_MACHINE} == {
        "license_id": issued["license_id"],
        "product_id": product_id,
        "product_slug": product,
        "product_name": f"App {product}",
        "buyer_email": "m@x.org",
        "license_status": "active",
        "deactivated_at": None,
        "deactivation_reason": None,
        "active": True,
        "ip_last_seen": None,
    }
    assert machine["activated_at"] == machine["first_seen_at"]
    assert machine["last_heartbeat_at"] == machine["last_seen_at"]
    refused = must(admin(daemon, "GET", "/v1/admin/machines?product_slug=no-such"), 404)
    assert "product 'no-such'" in refused["message"]


KEYSAT_MACHINE = (
    "license_id",
    "product_id",
    "product_slug",
    "product_name",
    "buyer_email",
    "license_status",
    "deactivated_at",
    "deactivation_reason",
    "active",
    "ip_last_seen",
)


def test_a_code_is_stored_upper_cased_as_keysat_stores_it_and_typed_in_any_case(daemon):
    product = make_product(daemon, price_sats_override=0)
    text = unique("spring")
    body = {"code": text, "kind": "percent", "amount": 500, "product_slug": product}
    created = must(admin(daemon, "POST", "/v1/admin/discount-codes", body), 200)
    assert created["code"] == text.upper()
    assert rows(daemon, "SELECT code FROM discount_codes WHERE id = ?", created["id"]) == [
        (text.upper(),)
    ]
    preview = f"/v1/discount-codes/preview?code={text.lower()}&product={product}"
    assert must(daemon.request("GET", preview), 200)["code"] == text.upper()


def _post_pem(daemon, pem: bytes):
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=10)
    try:
        headers = {**daemon.admin_headers(), "Content-Type": "application/x-pem-file"}
        conn.request("POST", "/v1/admin/import-issuer-key", body=pem, headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_an_imported_issuer_key_signs_at_once_and_only_before_any_license(tmp_path):
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    with DaemonProc(tmp_path) as proc:
        before = db_dump(proc)
        for bad in (
            b"not a key",
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ):
            status, refused = _post_pem(proc, bad)
            assert status == 400 and "nothing was written" in refused["message"], refused
        assert db_dump(proc) == before
        status, imported = _post_pem(proc, pem)
        assert (status, imported["ok"], imported["public_key_pem"]) == (200, True, public_pem)
        assert (
            must(proc.request("GET", "/v1/issuer/public-key"), 200)["public_key_pem"] == public_pem
        )
        assert rows(proc, "SELECT count(*), sum(active) FROM issuer_keys") == [(2, 1)]
        key = issue(proc, make_product(proc))["license_key"]
        verified = Verifier(PublicKey.from_pem(public_pem)).verify(key)
        assert Client(proc.url, timeout=10).validate(key).ok and verified.license_id
        status, refused = _post_pem(proc, pem)
        assert status == 409 and "nothing was written" in refused["message"]
    with DaemonProc(tmp_path) as again:  # the imported key is the one loaded at the next start
        assert must(again.request("GET", "/v1/pubkey"), 200)["public_key_pem"] == public_pem


def test_change_tier_as_a_comp_moves_the_license_and_signs_its_key_again(daemon):
    product = make_product(daemon, seats=1, entitlements=[])
    must(
        admin(
            daemon,
            "POST",
            "/v1/admin/policies",
            {
                "product_slug": product,
                "slug": "pro",
                "name": "Pro",
                "max_machines": 5,
                "duration_seconds": 86_400,
            },
        ),
        200,
    )
    issued = issue(daemon, product)
    path = f"/v1/admin/licenses/{issued['license_id']}/change-tier"
    before = db_dump(daemon)
    paid = must(admin(daemon, "POST", path, {"to_policy_slug": "pro"}), 400)
    assert paid["message"].startswith("'skip_payment' must be true")
    must(admin(daemon, "POST", path, {"to_policy_slug": "nope", "skip_payment": True}), 404)
    assert db_dump(daemon) == before
    moved = must(admin(daemon, "POST", path, {"to_policy_slug": "pro", "skip_payment": True}), 200)
    assert {k: moved[k] for k in ("ok", "applied", "skip_payment", "to_policy_slug")} == {
        "ok": True,
        "applied": True,
        "skip_payment": True,
        "to_policy_slug": "pro",
    }
    assert moved["from_policy_slug"] == "standard"
    now = must(admin(daemon, "GET", f"/v1/admin/licenses/{issued['license_id']}"), 200)
    assert (now["policy_slug"], now["max_machines"]) == ("pro", 5)
    assert now["expires_at"] is not None and now["license_key"] != issued["license_key"]
    # Both the old key and the new one validate, as the license now is.
    for key in (issued["license_key"], now["license_key"]):
        valid = must(daemon.request("POST", "/v1/validate", {"key": key}), 200)
        assert (valid["ok"], valid["expires_at"]) == (True, now["expires_at"])
