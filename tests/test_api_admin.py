"""The admin API over HTTP against the real daemon: the bearer key, every shape, every refusal.

A refused request must say what was wrong and must change nothing: each bad input below is
checked against a dump of the whole database taken before it.
"""

from __future__ import annotations

import json
import re
import uuid
from contextlib import closing

import pytest

from daemon.api import mount  # noqa: F401  (every handler module registers into the table)
from daemon.api.table import ENDPOINTS
from daemon.licensing import keys
from tests.daemon_proc import DaemonProc
from tests.test_api_support import (
    admin,
    db_dump,
    issue,
    make_product,
    must,
    read_db,
    rows,
    serving_daemon,
    unique,
)

daemon = pytest.fixture(scope="module", name="daemon")(serving_daemon)


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)


@pytest.mark.parametrize(
    "headers, status, error, fragment",
    [
        ({}, 401, "unauthorized", "need the header 'Authorization: Bearer <admin key>'"),
        # Keysat: a key that is there but wrong is 403; 401 only when there is none.
        (
            {"Authorization": "Bearer wrong-key-0123456789abcdef"},
            403,
            "forbidden",
            "admin key is wrong",
        ),
        ({"Authorization": "Basic dGVzdA=="}, 401, "unauthorized", "must be 'Bearer <admin key>'"),
        ({"Authorization": "Bearer "}, 401, "unauthorized", "must be 'Bearer <admin key>'"),
    ],
)
def test_every_admin_route_refuses_without_the_right_key(daemon, headers, status, error, fragment):
    before = db_dump(daemon)
    admin_routes = [(e.method, e.path) for e in ENDPOINTS if e.tag == "admin"]
    assert len(admin_routes) >= 30
    for method, path in admin_routes:
        body = {"slug": "x", "name": "x", "price_sats": 1} if method != "GET" else None
        got, answer = daemon.request(method, _concrete(path), body, headers=headers)
        assert got == status, (method, path, answer)
        assert answer["ok"] is False and answer["error"] == error
        assert fragment in answer["message"]
    assert db_dump(daemon) == before


def test_products_are_created_listed_and_deactivated(daemon):
    slug = unique("editor")
    product = must(
        admin(
            daemon,
            "POST",
            "/v1/admin/products",
            {
                "slug": slug,
                "name": "Editor",
                "description": "A text editor",
                "price_sats": 42_000,
                "metadata": {"homepage": "https://example.com"},
                "price_currency": "USD",
                "price_value": 1999,
            },
        ),
        200,
    )
    assert (product["slug"], product["active"], product["metadata"]) == (
        slug,
        True,
        {"homepage": "https://example.com"},
    )
    assert (product["price_currency"], product["price_value"]) == ("USD", 1999)
    assert must(daemon.request("GET", f"/v1/products/{slug}"), 200)["id"] == product["id"]

    off = must(
        admin(daemon, "PATCH", f"/v1/admin/products/{product['id']}/active", {"active": False}), 200
    )
    assert off["active"] is False
    public = must(daemon.request("GET", "/v1/products"), 200)["products"]
    assert slug not in [p["slug"] for p in public]
    assert must(daemon.request("GET", f"/v1/products/{slug}"), 404)["message"] == (
        f"product '{slug}'"
    )
    listed = must(admin(daemon, "GET", "/v1/admin/products"), 200)["products"]
    assert any(p["slug"] == slug and not p["active"] for p in listed)
    assert _audit_actions(daemon, f"product:{product['id']}") == [
        "product.create",
        "product.set_active",
    ]


def test_licenses_are_issued_listed_searched_and_change_status(daemon):
    product = make_product(daemon)
    first = issue(daemon, product, note="press copy for Ada")
    second = issue(daemon, product)
    assert set(first) >= {"license_id", "product_id", "license_key", "issued_at"}
    product_id = first["product_id"]

    listed = must(admin(daemon, "GET", f"/v1/admin/licenses?product_id={product_id}"), 200)
    assert {lic["id"] for lic in listed["licenses"]} == {first["license_id"], second["license_id"]}
    found = must(admin(daemon, "GET", "/v1/admin/licenses?q=press%20copy"), 200)["licenses"]
    assert [lic["id"] for lic in found] == [first["license_id"]]
    searched = must(admin(daemon, "GET", "/v1/admin/licenses/search?q=PRESS%20COPY"), 200)
    assert [lic["id"] for lic in searched["licenses"]] == [first["license_id"]]
    # Keysat: no filter at all answers the 100 most recent.
    recent = must(admin(daemon, "GET", "/v1/admin/licenses/search"), 200)["licenses"]
    assert [lic["id"] for lic in recent[:2]] == [second["license_id"], first["license_id"]]

    path = f"/v1/admin/licenses/{first['license_id']}"
    suspended = must(admin(daemon, "POST", f"{path}/suspend", {"reason": "chargeback"}), 200)
    assert suspended["ok"] is True
    assert (suspended["license"]["status"], suspended["license"]["suspension_reason"]) == (
        "suspended",
        "chargeback",
    )
    unsuspended = must(admin(daemon, "POST", f"{path}/unsuspend"), 200)
    assert unsuspended["ok"] is True and unsuspended["license"]["status"] == "active"
    assert unsuspended["license"]["suspension_reason"] is None
    done = must(admin(daemon, "POST", f"{path}/revoke", {"reason": "refund"}), 200)
    assert done["ok"] is True
    revoked = done["license"]
    assert (revoked["status"], revoked["revocation_reason"]) == ("revoked", "refund")
    assert revoked["revoked_at"] is not None

    before = db_dump(daemon)
    again = must(admin(daemon, "POST", f"{path}/revoke"), 404)
    assert again["message"] == f"license {first['license_id']} is already revoked"
    # Keysat: a status change the license's state does not allow is a 404.
    refused = must(admin(daemon, "POST", f"{path}/suspend"), 404)
    assert "is revoked; only an active license can be suspended" in refused["message"]
    assert must(admin(daemon, "POST", f"{path}/unsuspend"), 404)["error"] == "not_found"
    assert db_dump(daemon) == before

    by_status = must(
        admin(daemon, "GET", f"/v1/admin/licenses?product_id={product_id}&status=revoked"), 200
    )
    assert [lic["id"] for lic in by_status["licenses"]] == [first["license_id"]]
    assert must(admin(daemon, "GET", path), 200)["status"] == "revoked"
    assert _audit_actions(daemon, f"license:{first['license_id']}") == [
        "license.issue",
        "license.suspend",
        "license.unsuspend",
        "license.revoke",
    ]


def test_a_redeemed_license_is_found_by_the_buyer_email(daemon):
    product = make_product(daemon)
    code = unique("gift")
    must(
        admin(daemon, "POST", "/v1/admin/discount-codes", {"code": code, "kind": "free_license"}),
        200,
    )
    email = f"{unique('grace')}@example.org"
    redeemed = must(
        daemon.request(
            "POST", "/v1/redeem", {"product": product, "code": code, "buyer_email": email}
        ),
        200,
    )
    found = must(admin(daemon, "GET", f"/v1/admin/licenses/search?buyer_email={email}"), 200)
    assert [lic["id"] for lic in found["licenses"]] == [redeemed["license_id"]]
    assert _audit_actions(daemon, f"license:{redeemed['license_id']}") == ["license.redeem"]


def test_discount_codes_are_created_listed_and_disabled(daemon):
    product = make_product(daemon)
    code = must(
        admin(
            daemon,
            "POST",
            "/v1/admin/discount-codes",
            {
                "code": unique("FRIENDS"),
                "kind": "free_license",
                "product_slug": product,
                "policy_slug": "standard",
                "max_uses": 5,
                "description": "for beta testers",
            },
        ),
        200,
    )
    assert (code["kind"], code["used_count"], code["max_uses"], code["active"]) == (
        "free_license",
        0,
        5,
        True,
    )
    set_price = must(
        admin(
            daemon,
            "POST",
            "/v1/admin/discount-codes",
            {
                "code": unique("flat"),
                "kind": "set_price",
                "amount": 1000,
            },
        ),
        200,
    )
    assert set_price["kind"] == "set_price"  # the kind migration 0009 added
    listed = must(admin(daemon, "GET", f"/v1/admin/discount-codes?product_slug={product}"), 200)[
        "codes"
    ]
    assert [c["id"] for c in listed] == [code["id"]]

    disabled = must(
        admin(daemon, "PATCH", f"/v1/admin/discount-codes/{code['id']}/active", {"active": False}),
        200,
    )
    assert disabled["active"] is False
    before = db_dump(daemon)
    refused = must(
        daemon.request("POST", "/v1/redeem", {"product": product, "code": code["code"]}), 400
    )
    assert refused["message"] == f"code '{code['code']}' has been disabled by the seller"
    assert db_dump(daemon) == before
    duplicate = must(
        admin(
            daemon,
            "POST",
            "/v1/admin/discount-codes",
            {"code": code["code"].lower(), "kind": "percent", "amount": 500},
        ),
        409,
    )
    assert "already exists" in duplicate["message"]


def test_machines_are_listed_and_forced_off(daemon):
    product = make_product(daemon, seats=2)
    issued = issue(daemon, product)
    must(
        daemon.request(
            "POST",
            "/v1/machines/activate",
            {
                "key": issued["license_key"],
                "fingerprint": "fp-studio",
                "hostname": "studio",
            },
        ),
        200,
    )
    listed = must(
        admin(daemon, "GET", f"/v1/admin/machines?license_id={issued['license_id']}"), 200
    )
    [machine] = listed["machines"]
    assert (machine["hostname"], machine["active"]) == ("studio", True)

    kicked = must(
        admin(
            daemon,
            "POST",
            f"/v1/admin/machines/{machine['id']}/deactivate",
            {"reason": "stolen laptop"},
        ),
        200,
    )
    assert kicked["machine"]["deactivate_reason"] == "stolen laptop"
    again = must(admin(daemon, "POST", f"/v1/admin/machines/{machine['id']}/deactivate"), 409)
    assert "already deactivated" in again["message"]
    # The seat is free again for the very next call.
    heartbeat = must(
        daemon.request(
            "POST",
            "/v1/machines/heartbeat",
            {"key": issued["license_key"], "fingerprint": "fp-studio"},
        ),
        200,
    )
    assert heartbeat["reason"] == "not_activated"
    active = must(
        admin(daemon, "GET", f"/v1/admin/machines?license_id={issued['license_id']}"), 200
    )
    assert active["machines"] == []
    everything = must(
        admin(
            daemon,
            "GET",
            f"/v1/admin/machines?license_id={issued['license_id']}&include_inactive=true",
        ),
        200,
    )
    assert [m["id"] for m in everything["machines"]] == [machine["id"]]
    assert _audit_actions(daemon, f"machine:{machine['id']}") == ["machine.deactivate"]


def test_audit_log_pages_newest_first(daemon):
    make_product(daemon)
    page = must(admin(daemon, "GET", "/v1/admin/audit?limit=2"), 200)["entries"]
    assert len(page) == 2 and page[0]["id"] > page[1]["id"]
    older = must(admin(daemon, "GET", f"/v1/admin/audit?limit=2&before_id={page[1]['id']}"), 200)[
        "entries"
    ]
    assert older and older[0]["id"] < page[1]["id"]
    policies = must(admin(daemon, "GET", "/v1/admin/audit?action=policy.create"), 200)
    assert {e["action"] for e in policies["entries"]} == {"policy.create"}


FOREIGN_KEY = keys.issue_key(
    keys.IssuerKey.generate(),
    keys.KeyPayload(product_id=uuid.uuid4(), license_id=uuid.uuid4(), issued_at=1_700_000_000),
)

BAD_REQUESTS = [
    # (method, path, body, status, error, message fragment)
    (
        "POST",
        "/v1/admin/products",
        {"name": "x", "price_sats": 1},
        400,
        "bad_request",
        "'slug' is required",
    ),
    (
        "POST",
        "/v1/admin/products",
        {"slug": "Bad Slug", "name": "x", "price_sats": 1},
        400,
        "bad_request",
        "'slug' must be a slug",
    ),
    (
        "POST",
        "/v1/admin/products",
        {"slug": "ok-slug", "name": "x", "price_sats": "10"},
        400,
        "bad_request",
        "'price_sats' must be an integer, got a string",
    ),
    (
        "POST",
        "/v1/admin/products",
        {"slug": "ok-slug", "name": "x", "price_sats": True},
        400,
        "bad_request",
        "'price_sats' must be an integer, got a boolean",
    ),
    (
        "POST",
        "/v1/admin/products",
        {"slug": "ok-slug", "name": "x", "price_sats": -1},
        400,
        "bad_request",
        "'price_sats' must be between 0",
    ),
    (
        "POST",
        "/v1/admin/products",
        {"slug": "ok-slug", "name": "x", "price_sats": 1, "metadata": [1]},
        400,
        "bad_request",
        "'metadata' must be a JSON object",
    ),
    (
        "POST",
        "/v1/admin/products",
        {"slug": "ok-slug", "name": "x", "price_sats": 1, "price_currency": "usd"},
        400,
        "bad_request",
        "'price_currency' must be a 3-letter upper-case code",
    ),
    (
        "POST",
        "/v1/admin/policies",
        {"product_slug": "no-such-product", "slug": "p", "name": "P"},
        404,
        "not_found",
        "product 'no-such-product'",
    ),
    (
        "POST",
        "/v1/admin/policies",
        {"slug": "p", "name": "P"},
        400,
        "bad_request",
        "name the product with 'product_slug' or 'product_id'",
    ),
    ("POST", "/v1/admin/licenses", {"product_slug": "xyz"}, 404, "not_found", "product 'xyz'"),
    (
        "POST",
        "/v1/admin/licenses",
        {"product_slug": "xyz", "expires_at": "tomorrow"},
        400,
        "bad_request",
        "'expires_at' must be unix seconds or an ISO 8601 time",
    ),
    ("POST", "/v1/admin/licenses", {}, 400, "bad_request", "'product_slug' is required"),
    (
        "GET",
        "/v1/admin/licenses?limit=abc",
        None,
        400,
        "bad_request",
        "query parameter 'limit' must be an integer",
    ),
    ("GET", "/v1/admin/licenses?status=lost", None, 400, "bad_request", "'status' must be one"),
    (
        "GET",
        "/v1/admin/licenses?product_id=42",
        None,
        400,
        "bad_request",
        "query parameter 'product_id' must be a UUID",
    ),
    (
        "GET",
        "/v1/admin/licenses/not-a-uuid",
        None,
        404,
        "not_found",
        "nothing has the id 'not-a-uuid'",
    ),
    (
        "GET",
        f"/v1/admin/licenses/{uuid.UUID(int=7)}",
        None,
        404,
        "not_found",
        f"license {uuid.UUID(int=7)}",
    ),
    (
        "POST",
        f"/v1/admin/licenses/{uuid.UUID(int=7)}/revoke",
        {},
        404,
        "not_found",
        f"license {uuid.UUID(int=7)}",
    ),
    (
        "PATCH",
        f"/v1/admin/products/{uuid.UUID(int=7)}/active",
        {"active": "yes"},
        400,
        "bad_request",
        "'active' must be true or false",
    ),
    (
        "PATCH",
        f"/v1/admin/products/{uuid.UUID(int=7)}/active",
        {"active": True},
        404,
        "not_found",
        f"product {uuid.UUID(int=7)}",
    ),
    (
        "POST",
        "/v1/admin/discount-codes",
        {"code": "X1", "kind": "bogo"},
        400,
        "bad_request",
        "'kind' must be one of percent, fixed_sats, free_license, set_price",
    ),
    (
        "POST",
        "/v1/admin/discount-codes",
        {"code": "X1", "kind": "percent", "amount": 150, "featured": True},
        400,
        "bad_request",
        "'featured' cannot be true",
    ),
    (
        "POST",
        "/v1/admin/discount-codes",
        {"code": "X1", "kind": "percent", "amount": 10_100},
        400,
        "bad_request",
        "in basis points, 0 to 10000 (100%); got 10100",
    ),
    (
        "POST",
        "/v1/admin/discount-codes",
        {"code": "has space", "kind": "percent", "amount": 5},
        400,
        "bad_request",
        "'code' must be",
    ),
    ("POST", f"/v1/admin/machines/{uuid.UUID(int=7)}/deactivate", {}, 404, "not_found", "machine"),
    ("POST", "/v1/validate", {"fingerprint": "x"}, 400, "bad_request", "'key' is required"),
    (
        "POST",
        "/v1/validate",
        {"key": ["LIC1"]},
        400,
        "bad_request",
        "'key' must be a string, got a list",
    ),
    (
        "POST",
        "/v1/validate",
        {"key": "LIC1-A-A", "fingerprint": 7},
        400,
        "bad_request",
        "'fingerprint' must be a string, got a number",
    ),
    (
        "POST",
        "/v1/machines/activate",
        {"key": "LIC1-A-A", "fingerprint": "f"},
        400,
        "bad_request",
        "'key' is not a license key",
    ),
    (
        "POST",
        "/v1/machines/heartbeat",
        {"key": "LIC1-A-A"},
        400,
        "bad_request",
        "'fingerprint' is required",
    ),
    (
        "POST",
        "/v1/machines/deactivate",
        {"key": FOREIGN_KEY, "fingerprint": "f"},
        400,
        "bad_request",
        "'key' was not issued by this server",
    ),
    (
        "POST",
        "/v1/machines/activate",
        {"key": FOREIGN_KEY, "fingerprint": 12},
        400,
        "bad_request",
        "'fingerprint' must be a string",
    ),
    ("POST", "/v1/redeem", {"product": "p"}, 400, "bad_request", "'code' is required"),
    (
        "POST",
        "/v1/validate",
        {"key": "LIC1-A-A", "fingerprint": "\ud800"},
        400,
        "bad_request",
        "'fingerprint' is not valid Unicode text",
    ),
    (
        "POST",
        "/v1/admin/products",
        {"slug": "ok-slug", "name": "\udfff", "price_sats": 1},
        400,
        "bad_request",
        "'name' is not valid Unicode text",
    ),
    (
        "POST",
        "/v1/redeem",
        {"product": "Not A Slug", "code": "X"},
        400,
        "bad_request",
        "'product' must be a slug",
    ),
    ("GET", "/v1/products/NOT_A_SLUG", None, 400, "bad_request", "is not a product slug"),
    (
        "GET",
        "/v1/products/no-such-product/policies",
        None,
        404,
        "not_found",
        "product 'no-such-product'",
    ),
]


@pytest.mark.parametrize("method, path, body, status, error, fragment", BAD_REQUESTS)
def test_bad_input_gets_a_clear_4xx_and_changes_nothing(
    daemon, method, path, body, status, error, fragment
):
    before = db_dump(daemon)
    answer = must(admin(daemon, method, path, body), status)
    assert (answer["ok"], answer["error"]) == (False, error)
    assert fragment in answer["message"], answer["message"]
    assert db_dump(daemon) == before


@pytest.mark.parametrize(
    "raw, fragment",
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'"LIC1-..."', "must be a JSON object"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[" * 30_000 + b"]" * 30_000, "must be a JSON object"),
    ],
)
def test_malformed_bodies_are_refused_on_every_write_route(daemon, raw, fragment):
    before = db_dump(daemon)
    for path in (
        "/v1/validate",
        "/v1/redeem",
        "/v1/machines/activate",
        "/v1/admin/products",
        "/v1/admin/licenses",
        "/v1/admin/discount-codes",
    ):
        status, answer = _raw_post(daemon, path, raw)
        assert status == 400, (path, answer)
        assert answer["error"] == "bad_request" and fragment in answer["message"]
    assert db_dump(daemon) == before


def test_a_huge_body_is_refused_before_it_is_read(daemon):
    before = db_dump(daemon)
    huge = json.dumps({"key": "A" * 200_000}).encode()
    status, answer = _raw_post(daemon, "/v1/validate", huge)
    assert status == 413 and answer["ok"] is False
    status, answer = _raw_post(daemon, "/v1/admin/products", huge)
    assert status == 413
    assert db_dump(daemon) == before


def test_a_duplicate_slug_is_a_conflict_and_writes_nothing(daemon):
    slug = make_product(daemon)
    before = db_dump(daemon)
    answer = must(
        admin(
            daemon, "POST", "/v1/admin/products", {"slug": slug, "name": "Again", "price_sats": 1}
        ),
        409,
    )
    assert answer["message"] == f"a product with slug '{slug}' already exists"
    answer = must(
        admin(
            daemon,
            "POST",
            "/v1/admin/policies",
            {"product_slug": slug, "slug": "standard", "name": "Again"},
        ),
        409,
    )
    assert "already has a policy 'standard'" in answer["message"]
    assert db_dump(daemon) == before


def test_first_boot_generates_an_admin_key_kept_in_settings_and_never_logged(tmp_path):
    with DaemonProc(tmp_path, admin_key=None) as proc:
        with closing(read_db(proc)) as conn:
            [(key,)] = conn.execute(
                "SELECT value FROM settings WHERE key = 'admin_api_key'"
            ).fetchall()
            private = conn.execute("SELECT private_key FROM issuer_keys").fetchone()[0]
        assert len(key) >= 32
        headers = {"Authorization": f"Bearer {key}"}
        assert proc.request("GET", "/v1/admin/products", headers=headers)[0] == 200
        assert (
            proc.request("GET", "/v1/admin/products", headers={"Authorization": f"Bearer {key}x"})[
                0
            ]
            == 403
        )
    with DaemonProc(tmp_path, admin_key=None) as again:  # a restart keeps the same key
        assert again.request("GET", "/v1/admin/products", headers=headers)[0] == 200
        log = again.log_text()
    assert key not in log
    assert private.hex() not in log and private.hex().upper() not in log


def test_an_admin_key_from_the_environment_wins_and_is_stored(tmp_path):
    with DaemonProc(tmp_path, admin_key="first-key-0123456789abcdef") as proc:
        pass
    with DaemonProc(tmp_path, admin_key="second-key-0123456789abcdef") as proc:
        assert (
            proc.request(
                "GET",
                "/v1/admin/audit",
                headers={"Authorization": "Bearer first-key-0123456789abcdef"},
            )[0]
            == 403
        )
        entries = must(admin(proc, "GET", "/v1/admin/audit?action=admin_key.set"), 200)
        stored = rows(proc, "SELECT value FROM settings WHERE key = 'admin_api_key'")
        log = proc.log_text()
    assert stored == [("second-key-0123456789abcdef",)]
    assert [e["detail"] for e in entries["entries"]] == [{"source": "environment"}] * 2
    assert "second-key-0123456789abcdef" not in log


def _audit_actions(proc: DaemonProc, subject: str) -> list[str]:
    return [
        r[0]
        for r in rows(proc, "SELECT action FROM audit_log WHERE subject = ? ORDER BY id", subject)
    ]


def _raw_post(proc: DaemonProc, path: str, raw: bytes) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        proc.url + path,
        data=raw,
        method="POST",
        headers={**proc.admin_headers(), "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
