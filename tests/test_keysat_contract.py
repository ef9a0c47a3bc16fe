"""Keysat's shapes and semantics, route by route, over HTTP against the real daemon.

Each test sends what a Keysat client sends and checks the exact status and body Keysat
answers with (issue 13): policies in seconds with grace, unlimited seats and a price
override; issue overrides; discount codes with `max_uses` and percent in basis points;
status changes answering `{ok: true}`; the admin routes Keysmith lacked. Refusals change
nothing, proven by a dump of the whole database.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from contextlib import closing

import pytest
from keysat_licensing_client import PublicKey, Verifier

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

DAY = 86_400
# Keysat's delete answer: what went with the row (never a sold license, invoice or machine).
NOTHING_CASCADED = {
    "force": False,
    "cascaded_licenses": 0,
    "cascaded_invoices": 0,
    "cascaded_machines": 0,
    "cascaded_redemptions": 0,
}
KEYSAT_POLICY = {
    "duration_seconds": 30 * DAY,
    "grace_seconds": DAY,
    "max_machines": 3,
    "price_sats_override": 500,
}


def _product(daemon, price: int = 10_000, **extra) -> dict:
    body = {"slug": unique("kp"), "name": "Keysat product", "price_sats": price, **extra}
    return must(admin(daemon, "POST", "/v1/admin/products", body), 200)


def _policy(daemon, product_slug: str, slug: str = "monthly", **terms) -> dict:
    body = {"product_slug": product_slug, "slug": slug, "name": slug.title(), **terms}
    return must(admin(daemon, "POST", "/v1/admin/policies", body), 200)


def _write(daemon, sql: str, *params: object) -> None:
    """A plain writer on the file, as another process would be: moves a license in time."""
    with closing(sqlite3.connect(daemon.db_path, timeout=10)) as conn:
        conn.execute(sql, params)
        conn.commit()


# ----- products -----


def test_a_product_priced_in_keysats_typed_form_is_answered_in_it_exactly(daemon):
    body = {"slug": unique("typed"), "name": "Typed", "price_currency": "SAT", "price_value": 5000}
    product = must(admin(daemon, "POST", "/v1/admin/products", body), 200)
    assert product == {
        "id": product["id"],
        "slug": body["slug"],
        "name": "Typed",
        "description": "",
        "price_sats": 5000,
        "price_currency": "SAT",
        "price_value": 5000,
        "metadata": {},
        "entitlements_catalog": [],
        "active": True,
        "created_at": product["created_at"],
        "updated_at": product["updated_at"],
    }
    # Keysat's legacy form: price_sats alone is a price in sats.
    legacy = _product(daemon, price=1234)
    assert (legacy["price_currency"], legacy["price_value"]) == ("SAT", 1234)
    path = f"/v1/admin/products/{product['id']}"
    edited = must(admin(daemon, "PATCH", path, {"price_currency": "SAT", "price_value": 7000}), 200)
    assert (edited["price_sats"], edited["price_value"]) == (7000, 7000)
    assert rows(daemon, "SELECT price_currency FROM products WHERE id = ?", product["id"]) == [
        ("BTC",)  # 0010's spelling of sats, kept for an older version
    ]


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"price_currency": "USD", "price_value": 999}, "'price_sats' is needed with a USD price"),
        ({"price_value": 999}, "'price_currency' and 'price_value' go together"),
        (
            {"price_sats": 10, "price_currency": "SAT", "price_value": 20},
            "'price_sats' 10 and 'price_value' 20 in SAT disagree",
        ),
        ({}, "'price_sats' is missing"),
        ({"price_sats": 10, "price_minor": 10}, "'price_minor' is not a field of this request"),
    ],
)
def test_a_product_price_keysmith_cannot_charge_is_refused_by_name(daemon, body, named):
    before = db_dump(daemon)
    refused = must(
        admin(daemon, "POST", "/v1/admin/products", {"slug": unique("np"), "name": "N", **body}),
        400,
    )
    assert named in refused["message"]
    assert db_dump(daemon) == before


# ----- policies -----


def test_a_keysat_policy_keeps_every_term_and_issues_by_them(daemon):
    product = _product(daemon)
    policy = _policy(daemon, product["slug"], **KEYSAT_POLICY, is_default=True)
    assert {name: policy[name] for name in KEYSAT_POLICY} == KEYSAT_POLICY
    assert (policy["price_sats"], policy["duration_days"]) == (500, 30)
    [public] = must(daemon.request("GET", f"/v1/products/{product['slug']}/policies"), 200)[
        "policies"
    ]
    assert (public["price_sats"], public["duration_seconds"], public["grace_seconds"]) == (
        500,
        30 * DAY,
        DAY,
    )
    issued = issue(daemon, product["slug"])
    assert issued["max_machines"] == 3 and issued["is_trial"] is False
    pem = must(daemon.request("GET", "/v1/pubkey"), 200)["public_key_pem"]
    key = Verifier(PublicKey.from_pem(pem)).verify(issued["license_key"])
    assert key.expires_at - key.issued_at == 30 * DAY
    answer = must(daemon.request("POST", "/v1/validate", {"key": issued["license_key"]}), 200)
    assert (answer["ok"], answer["max_machines"], answer["in_grace_period"]) == (True, 3, False)


def test_a_policy_keeps_keysats_metadata_and_an_edit_replaces_it(daemon):
    product = _product(daemon)
    metadata = {"highlight": True, "marketing_bullets": ["Fast", "Private"]}
    policy = _policy(daemon, product["slug"], metadata=metadata)
    assert policy["metadata"] == metadata
    path = f"/v1/admin/policies/{policy['id']}"
    edited = must(admin(daemon, "PATCH", path, {"metadata": {"tier": "gold"}}), 200)
    assert edited["metadata"] == {"tier": "gold"}
    assert must(admin(daemon, "PATCH", path, {"name": "Gold"}), 200)["metadata"] == {"tier": "gold"}
    before = db_dump(daemon)
    refused = must(admin(daemon, "PATCH", path, {"metadata": [1, 2]}), 400)
    assert "'metadata' must be a JSON object" in refused["message"], refused
    assert db_dump(daemon) == before


def test_a_policy_without_a_price_override_costs_the_products_price(daemon):
    product = _product(daemon, price=7_000)
    assert _policy(daemon, product["slug"])["price_sats"] == 7_000


def test_zero_machines_is_unlimited(daemon):
    product = _product(daemon)
    _policy(daemon, product["slug"], max_machines=0, is_default=True)
    key = issue(daemon, product["slug"])["license_key"]
    for n in range(12):
        seat = must(
            daemon.request("POST", "/v1/machines/activate", {"key": key, "fingerprint": f"m{n}"}),
            200,
        )
        assert (seat["ok"], seat["active_count"], seat["max_machines"]) == (True, n + 1, 0)
    answer = must(daemon.request("POST", "/v1/validate", {"key": key, "fingerprint": "m-new"}), 200)
    assert (answer["ok"], answer["max_machines"]) == (True, 0)


def test_policies_are_edited_shown_archived_and_deleted(daemon):
    product = _product(daemon)
    policy = _policy(daemon, product["slug"], **KEYSAT_POLICY)
    path = f"/v1/admin/policies/{policy['id']}"
    edited = must(
        admin(daemon, "PATCH", path, {"grace_seconds": 7 * DAY, "max_machines": 0, "name": "M"}),
        200,
    )
    assert (edited["grace_seconds"], edited["max_machines"], edited["name"]) == (7 * DAY, 0, "M")
    assert edited["duration_seconds"] == 30 * DAY  # untouched fields stay
    assert must(admin(daemon, "PATCH", f"{path}/public", {"public": False}), 200) == {
        "ok": True,
        "public": False,
    }
    assert must(admin(daemon, "PATCH", f"{path}/active", {"active": True}), 200) == {
        "ok": True,
        "active": True,
    }
    product_path = f"/v1/admin/products/{product['id']}/active"
    assert must(admin(daemon, "PATCH", product_path, {"active": True}), 200) == {
        "ok": True,
        "active": True,
    }
    assert must(admin(daemon, "PATCH", f"{path}/archived", {"archived": True}), 200) == {
        "ok": True,
        "archived": True,
    }
    listing = f"/v1/admin/policies?product_id={product['id']}"
    # As Keysat: an archived policy is listed only when asked for.
    assert must(admin(daemon, "GET", listing), 200)["policies"] == []
    listed = must(admin(daemon, "GET", f"{listing}&include_archived=true"), 200)
    [shown] = listed["policies"]
    assert (shown["public"], shown["archived"], shown["active"]) == (False, True, False)
    deleted = {"ok": True, "deleted": policy["slug"], **NOTHING_CASCADED}
    assert must(admin(daemon, "DELETE", path), 200) == deleted
    assert must(admin(daemon, "DELETE", path), 404)["error"] == "not_found"


def test_keysats_force_delete_is_refused_by_name_with_nothing_written(daemon):
    product = _product(daemon)
    policy = _policy(daemon, product["slug"])
    before = db_dump(daemon)
    for path in (f"/v1/admin/policies/{policy['id']}", f"/v1/admin/products/{product['id']}"):
        refused = must(admin(daemon, "DELETE", f"{path}?force=true"), 400)
        assert "'force' cannot be true: Keysmith never deletes licenses" in refused["message"]
        unknown = must(admin(daemon, "DELETE", f"{path}?cascade=1"), 400)
        assert "'cascade' is not a field of this request" in unknown["message"]
    assert db_dump(daemon) == before
    gone = must(admin(daemon, "DELETE", f"/v1/admin/policies/{policy['id']}?force=false"), 200)
    assert gone == {"ok": True, "deleted": policy["slug"], **NOTHING_CASCADED}


def test_a_policy_with_licenses_is_kept_and_says_so(daemon):
    product = _product(daemon)
    policy = _policy(daemon, product["slug"], is_default=True)
    issue(daemon, product["slug"])
    before = db_dump(daemon)
    refused = must(admin(daemon, "DELETE", f"/v1/admin/policies/{policy['id']}"), 409)
    assert "has licenses, invoices or codes" in refused["message"]
    assert db_dump(daemon) == before


# ----- products -----


def test_products_are_edited_with_their_catalog_and_deleted_when_unused(daemon):
    product = _product(daemon)
    path = f"/v1/admin/products/{product['id']}"
    catalog = [{"slug": "sync", "name": "Sync", "description": "Cloud sync"}]
    edited = must(
        admin(daemon, "PATCH", path, {"name": "Renamed", "entitlements_catalog": catalog}), 200
    )
    assert (edited["name"], edited["entitlements_catalog"], edited["slug"]) == (
        "Renamed",
        catalog,
        product["slug"],
    )
    _policy(daemon, product["slug"])
    assert must(admin(daemon, "DELETE", path), 200) == {
        "ok": True,
        "deleted": product["slug"],
        **NOTHING_CASCADED,
        "cascaded_policies": 1,
        "cascaded_codes": 0,
    }
    assert must(daemon.request("GET", f"/v1/products/{product['slug']}"), 404)["ok"] is False


def test_a_product_with_licenses_is_not_deleted(daemon):
    slug = make_product(daemon)
    issue(daemon, slug)
    [(product_id,)] = rows(daemon, "SELECT id FROM products WHERE slug = ?", slug)
    before = db_dump(daemon)
    refused = must(admin(daemon, "DELETE", f"/v1/admin/products/{product_id}"), 409)
    assert "Set it inactive" in refused["message"]
    assert db_dump(daemon) == before


# ----- licenses -----


def test_issue_overrides_win_over_the_policy(daemon):
    product = _product(daemon, entitlements_catalog=[{"slug": "pro", "name": "Pro"}])
    _policy(daemon, product["slug"], **KEYSAT_POLICY, is_default=True)
    issued = issue(
        daemon,
        product["slug"],
        entitlements=["pro"],
        max_machines=0,
        is_trial=True,
        grace_seconds=3 * DAY,
        buyer_email="Ada@Example.org",
    )
    assert (issued["entitlements"], issued["is_trial"], issued["max_machines"]) == (
        ["pro"],
        True,
        0,
    )
    pem = must(daemon.request("GET", "/v1/pubkey"), 200)["public_key_pem"]
    key = Verifier(PublicKey.from_pem(pem)).verify(issued["license_key"])
    assert key.is_trial and list(key.entitlements) == ["pro"]
    stored = must(admin(daemon, "GET", f"/v1/admin/licenses/{issued['license_id']}"), 200)
    assert (stored["grace_seconds"], stored["max_machines"], stored["buyer_email"]) == (
        3 * DAY,
        0,
        "Ada@Example.org",
    )


def test_status_changes_answer_ok_and_refuse_what_the_state_forbids_with_404(daemon):
    license_id = issue(daemon, make_product(daemon))["license_id"]
    path = f"/v1/admin/licenses/{license_id}"
    before = db_dump(daemon)
    assert must(admin(daemon, "POST", f"{path}/unsuspend"), 404)["error"] == "not_found"
    assert db_dump(daemon) == before
    suspended = must(admin(daemon, "POST", f"{path}/suspend", {"reason": "unpaid"}), 200)
    assert suspended["ok"] is True and suspended["license"]["suspension_reason"] == "unpaid"
    before = db_dump(daemon)
    assert must(admin(daemon, "POST", f"{path}/suspend"), 404)["error"] == "not_found"
    assert db_dump(daemon) == before
    revoked = must(admin(daemon, "POST", f"{path}/revoke", {"reason": "fraud"}), 200)
    assert revoked["ok"] is True
    # Keysat's names for the two reasons; Keysmith's old ones are gone from the answer.
    assert (revoked["license"]["revocation_reason"], revoked["license"]["suspension_reason"]) == (
        "fraud",
        "unpaid",
    )
    assert not {"revoke_reason", "suspend_reason"} & set(revoked["license"])
    before = db_dump(daemon)
    for change in ("suspend", "unsuspend", "revoke"):
        assert must(admin(daemon, "POST", f"{path}/{change}"), 404)["error"] == "not_found"
    assert db_dump(daemon) == before
    [(reason, detail)] = rows(
        daemon,
        "SELECT suspend_reason, (SELECT detail FROM audit_log WHERE action = 'license.suspend' "
        "AND subject = ?) FROM licenses WHERE id = ?",
        f"license:{license_id}",
        license_id,
    )
    # A revoke keeps the reason the license was suspended for, and the audit row has it too.
    assert reason == "unpaid" and '"reason": "unpaid"' in detail


def test_license_search_by_buyer_email_and_invoice_and_the_100_most_recent(daemon):
    product = _product(daemon, price=0)
    _policy(daemon, product["slug"], is_default=True)
    email = f"{unique('grace')}@Example.org"
    bought = must(
        daemon.request("POST", "/v1/purchase", {"product": product["slug"], "buyer_email": email}),
        200,
    )
    by_email = must(
        admin(daemon, "GET", f"/v1/admin/licenses/search?buyer_email={email.upper()}"), 200
    )
    assert [lic["id"] for lic in by_email["licenses"]] == [bought["license_id"]]
    by_invoice = must(
        admin(daemon, "GET", f"/v1/admin/licenses/search?invoice_id={bought['invoice_id']}"), 200
    )
    assert [lic["id"] for lic in by_invoice["licenses"]] == [bought["license_id"]]
    # Keysat's license answer names the invoice that sold it; one an admin issued has none.
    assert by_invoice["licenses"][0]["invoice_id"] == bought["invoice_id"]
    for _ in range(101):
        issue(daemon, product["slug"])
    recent = must(admin(daemon, "GET", "/v1/admin/licenses/search"), 200)["licenses"]
    assert len(recent) == 100
    assert recent[0]["invoice_id"] is None
    issued_at = [lic["issued_at"] for lic in recent]
    assert issued_at == sorted(issued_at, reverse=True)


def test_summary_and_counts(daemon):
    product = _product(daemon)
    policy = _policy(daemon, product["slug"], is_default=True)
    first = issue(daemon, product["slug"])
    issue(daemon, product["slug"])
    must(admin(daemon, "POST", f"/v1/admin/licenses/{first['license_id']}/revoke"), 200)
    summary = must(admin(daemon, "GET", "/v1/admin/licenses/summary"), 200)
    assert set(summary) == {"total", "active", "suspended", "revoked", "last_24h", "last_7d"}
    [(total, revoked)] = rows(
        daemon, "SELECT count(*), count(*) FILTER (WHERE status = 'revoked') FROM licenses"
    )
    assert (summary["total"], summary["revoked"]) == (total, revoked)
    counts = must(admin(daemon, "GET", "/v1/admin/licenses/counts"), 200)
    assert counts["by_product"][product["id"]] == 2
    assert counts["by_policy"][policy["id"]] == 2


# ----- discount codes -----


def test_discount_codes_in_keysat_shapes(daemon):
    product = _product(daemon, price=10_000)
    _policy(daemon, product["slug"], is_default=True)
    body = {"code": unique("Q"), "kind": "percent", "amount": 2500, "max_uses": 2}
    code = must(admin(daemon, "POST", "/v1/admin/discount-codes", body), 200)
    assert (code["amount"], code["max_uses"], code["used_count"]) == (2500, 2, 0)
    listed = must(admin(daemon, "GET", "/v1/admin/discount-codes"), 200)
    assert code["id"] in [c["id"] for c in listed["codes"]]
    path = f"/v1/admin/discount-codes/{code['id']}"
    assert must(admin(daemon, "PATCH", f"{path}/active", {"active": False}), 200) == {
        "ok": True,
        "active": False,
    }
    # As Keysat: a disabled code is listed only when asked for.
    listed = must(admin(daemon, "GET", "/v1/admin/discount-codes"), 200)
    assert code["id"] not in [c["id"] for c in listed["codes"]]
    listed = must(admin(daemon, "GET", "/v1/admin/discount-codes?include_inactive=true"), 200)
    assert code["id"] in [c["id"] for c in listed["codes"]]
    must(admin(daemon, "PATCH", f"{path}/active", {"active": True}), 200)
    preview = must(
        daemon.request(
            "GET", f"/v1/discount-codes/preview?code={code['code']}&product={product['slug']}"
        ),
        200,
    )
    assert preview == {
        "valid": True,
        "message": "2500 sats off: 7500 sats to pay.",
        "base_price_sats": 10_000,
        "code": code["code"],
        "kind": "percent",
        "is_free": False,
        "discount_applied_sats": 2500,
        "final_price_sats": 7500,
        "amount_pct": 25.0,
    }
    path = f"/v1/admin/discount-codes/{code['id']}"
    edited = must(admin(daemon, "PATCH", path, {"max_uses": 5, "description": "launch"}), 200)
    assert (edited["max_uses"], edited["description"], edited["amount"]) == (5, "launch", 2500)
    one = must(admin(daemon, "GET", path), 200)
    assert one == {"code": edited, "redemptions": []}
    assert must(admin(daemon, "DELETE", path), 200) == {"ok": True, "deleted": code["code"]}
    unknown = must(
        daemon.request(
            "GET", f"/v1/discount-codes/preview?code={code['code']}&product={product['slug']}"
        ),
        200,
    )
    assert (unknown["valid"], unknown["reason"]) == (False, "unknown_code")


def test_a_code_in_keysat_terms_is_answered_in_them_exactly(daemon):
    product = _product(daemon, price=10_000)
    monthly = _policy(daemon, product["slug"], "monthly", is_default=True)
    yearly = _policy(daemon, product["slug"], "yearly")
    _policy(daemon, product["slug"], "lifetime")
    body = {
        "code": unique("TWEET"),
        "kind": "percent",
        "amount": 1250,  # basis points: 12.5 %
        "discount_currency": "sat",
        "max_uses": 10,
        "product_slug": product["slug"],
        "policy_slugs": ["monthly", "yearly"],
        "referrer_label": "launch-twitter",
        "description": "Launch week",
        "featured": False,
    }
    code = must(admin(daemon, "POST", "/v1/admin/discount-codes", body), 200)
    assert code == {
        "id": code["id"],
        "code": body["code"].upper(),  # as Keysat stores it
        "kind": "percent",
        "amount": 1250,
        "discount_currency": "SAT",
        "applies_to_product_id": product["id"],
        "product_slug": product["slug"],
        "applies_to_policy_id": None,
        "policy_slug": None,
        "applies_to_policy_ids": [monthly["id"], yearly["id"]],
        "max_uses": 10,
        "used_count": 0,
        "expires_at": None,
        "active": True,
        "description": "Launch week",
        "referrer_label": "launch-twitter",
        "featured": False,
        "created_at": code["created_at"],
        "updated_at": code["created_at"],  # Keysat's: a new code was last changed when made
    }
    # Stored as given: the exact basis points beside a whole percent an older version reads.
    assert rows(
        daemon,
        "SELECT c.amount, t.percent_bps, t.referrer_label, c.note FROM discount_codes AS c "
        "JOIN discount_code_terms AS t ON t.code_id = c.id WHERE c.id = ?",
        code["id"],
    ) == [(12, 1250, "launch-twitter", "Launch week")]
    preview = f"/v1/discount-codes/preview?code={code['code']}&product={product['slug']}"
    assert must(daemon.request("GET", f"{preview}&policy_slug=yearly"), 200) == {
        "valid": True,
        "message": "1250 sats off: 8750 sats to pay.",
        "base_price_sats": 10_000,
        "code": code["code"],
        "kind": "percent",
        "is_free": False,
        "discount_applied_sats": 1250,
        "final_price_sats": 8750,
        "amount_pct": 12.5,
    }
    other = must(daemon.request("GET", f"{preview}&policy_slug=lifetime"), 200)
    assert (other["valid"], other["reason"]) == (False, "wrong_tier")
    # Keysat's edit: a new label, one policy (kept in the one-policy column), then none.
    path = f"/v1/admin/discount-codes/{code['id']}"
    edited = must(
        admin(daemon, "PATCH", path, {"referrer_label": "newsletter", "policy_slugs": ["yearly"]}),
        200,
    )
    assert (edited["referrer_label"], edited["amount"]) == ("newsletter", 1250)
    assert (edited["applies_to_policy_id"], edited["policy_slug"]) == (yearly["id"], "yearly")
    assert edited["applies_to_policy_ids"] == []
    cleared = must(admin(daemon, "PATCH", path, {"policy_slugs": [], "amount": 50}), 200)
    assert (cleared["applies_to_policy_id"], cleared["applies_to_policy_ids"]) == (None, [])
    assert cleared["amount"] == 50
    lifetime = must(daemon.request("GET", f"{preview}&policy_slug=lifetime"), 200)
    assert (lifetime["valid"], lifetime["discount_applied_sats"]) == (True, 50)
    # As Keysat's edit: null clears the limit and the label; what is absent stays.
    unlimited = must(admin(daemon, "PATCH", path, {"max_uses": None, "referrer_label": None}), 200)
    assert (unlimited["max_uses"], unlimited["referrer_label"]) == (None, None)
    assert (unlimited["description"], unlimited["amount"]) == ("Launch week", 50)
    assert must(admin(daemon, "PATCH", path, {}), 200) == unlimited


def test_a_policy_named_by_a_code_cannot_be_deleted(daemon):
    product = _product(daemon)
    _policy(daemon, product["slug"], "monthly")
    yearly = _policy(daemon, product["slug"], "yearly")
    body = {
        "code": unique("PAIR"),
        "kind": "fixed_sats",
        "amount": 100,
        "product_slug": product["slug"],
        "policy_slugs": ["monthly", "yearly"],
    }
    must(admin(daemon, "POST", "/v1/admin/discount-codes", body), 200)
    before = db_dump(daemon)
    refused = must(admin(daemon, "DELETE", f"/v1/admin/policies/{yearly['id']}"), 409)
    assert "has licenses, invoices or codes" in refused["message"]
    assert db_dump(daemon) == before


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"featured": True}, "'featured' cannot be true"),
        ({"discount_currency": "USD"}, "'discount_currency' 'USD' is not accepted"),
        ({"amount": 10_001}, "'amount' of a percent code is in basis points, 0 to 10000"),
        ({"policy_slugs": ["monthly"]}, "'policy_slugs' needs 'product_slug' too"),
        ({"note": "old name"}, "'note' is not a field of this request"),
        ({"referrer_label": "x" * 201}, "referrer_label"),
    ],
)
def test_a_code_keysmith_cannot_honour_is_refused_by_name_with_nothing_written(
    daemon, extra, named
):
    body = {"code": unique("NO"), "kind": "percent", "amount": 1000, **extra}
    before = db_dump(daemon)
    refused = must(admin(daemon, "POST", "/v1/admin/discount-codes", body), 400)
    assert named in refused["message"]
    assert db_dump(daemon) == before


def test_code_edits_keysmith_cannot_honour_are_refused_with_nothing_written(daemon):
    product = _product(daemon)
    _policy(daemon, product["slug"], "monthly")
    unscoped = must(
        admin(
            daemon,
            "POST",
            "/v1/admin/discount-codes",
            {"code": unique("ANY"), "kind": "fixed_sats", "amount": 10},
        ),
        200,
    )
    scoped = must(
        admin(
            daemon,
            "POST",
            "/v1/admin/discount-codes",
            {
                "code": unique("ONE"),
                "kind": "percent",
                "amount": 10,
                "product_slug": product["slug"],
            },
        ),
        200,
    )
    before = db_dump(daemon)
    for code, body, status, named in (
        (unscoped, {"policy_slugs": ["monthly"]}, 400, "is not limited to a product"),
        (scoped, {"policy_slugs": ["nope"]}, 404, "policy 'nope'"),
        (scoped, {"featured": True}, 400, "'featured' cannot be true"),
        (scoped, {"amount": 10_001}, 400, "'amount' of a percent code"),
        (scoped, {"uses": 3}, 400, "'uses' is not a field"),
    ):
        path = f"/v1/admin/discount-codes/{code['id']}"
        refused = must(admin(daemon, "PATCH", path, body), status)
        assert named in refused["message"], (body, refused)
    assert db_dump(daemon) == before


def test_the_public_toggle_takes_keysats_field_only(daemon):
    product = _product(daemon)
    policy = _policy(daemon, product["slug"])
    path = f"/v1/admin/policies/{policy['id']}/public"
    before = db_dump(daemon)
    refused = must(admin(daemon, "PATCH", path, {"is_public": False}), 400)
    assert "'is_public' is not a field of this request" in refused["message"]
    assert db_dump(daemon) == before
    assert must(admin(daemon, "PATCH", path, {"public": False}), 200) == {
        "ok": True,
        "public": False,
    }
    [listed] = must(
        admin(daemon, "GET", f"/v1/admin/policies?product_slug={product['slug']}"), 200
    )["policies"]
    assert listed["public"] is False and "is_public" not in listed
    catalogue = must(daemon.request("GET", f"/v1/products/{product['slug']}/policies"), 200)
    assert catalogue["policies"] == []


def test_a_used_code_is_kept_and_its_redemptions_listed(daemon):
    slug = make_product(daemon)
    code = must(
        admin(
            daemon,
            "POST",
            "/v1/admin/discount-codes",
            {"code": unique("GIFT"), "kind": "free_license", "max_uses": 1},
        ),
        200,
    )
    redeemed = must(
        daemon.request(
            "POST", "/v1/redeem", {"product": slug, "code": code["code"], "buyer_email": "a@b.c"}
        ),
        200,
    )
    path = f"/v1/admin/discount-codes/{code['id']}"
    [used] = must(admin(daemon, "GET", path), 200)["redemptions"]
    # Keysat's redemption: the code, the prices off its invoice, redeemed once issued.
    assert used == {
        "id": used["id"],
        "code_id": code["id"],
        "invoice_id": redeemed["invoice_id"],
        "license_id": redeemed["license_id"],
        "status": "redeemed",
        "discount_applied_sats": 50_000,
        "base_price_sats": 50_000,
        "final_price_sats": 0,
        "buyer_email": "a@b.c",
        "created_at": used["created_at"],
        "updated_at": used["created_at"],
    }
    before = db_dump(daemon)
    assert "kept for its redemptions" in must(admin(daemon, "DELETE", path), 409)["message"]
    again = must(daemon.request("POST", "/v1/redeem", {"product": slug, "code": code["code"]}), 400)
    assert "its limit" in again["message"]
    preview = must(
        daemon.request("GET", f"/v1/discount-codes/preview?code={code['code']}&product={slug}"),
        200,
    )
    assert (preview["valid"], preview["reason"]) == (False, "exhausted")
    assert db_dump(daemon) == before


# ----- grace -----


def test_validate_answers_ok_in_grace_then_expired(daemon):
    product = _product(daemon)
    _policy(daemon, product["slug"], duration_seconds=30 * DAY, grace_seconds=DAY, is_default=True)
    issued = issue(daemon, product["slug"])
    key, license_id = issued["license_key"], issued["license_id"]
    now = int(time.time())
    _write(
        daemon,
        "UPDATE licenses SET issued_at = ?, expires_at = ? WHERE id = ?",
        now - 40 * DAY,
        now - 60,
        license_id,
    )
    answer = must(daemon.request("POST", "/v1/validate", {"key": key}), 200)
    assert (answer["ok"], answer["in_grace_period"]) == (True, True)
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60))
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60 + DAY))
    assert (answer["expires_at"], answer["grace_until"]) == (expires, until)
    seat = must(
        daemon.request("POST", "/v1/machines/activate", {"key": key, "fingerprint": "fp-g"}), 200
    )
    assert seat["ok"] is True
    _write(daemon, "UPDATE licenses SET expires_at = ? WHERE id = ?", now - DAY - 60, license_id)
    answer = must(daemon.request("POST", "/v1/validate", {"key": key}), 200)
    assert (answer["ok"], answer["reason"], answer["grace_until"]) == (
        False,
        "expired",
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60)),
    )


def test_a_license_without_grace_expires_at_its_time(daemon):
    product = _product(daemon)
    _policy(daemon, product["slug"], duration_seconds=DAY, is_default=True)
    issued = issue(daemon, product["slug"])
    now = int(time.time())
    _write(
        daemon,
        "UPDATE licenses SET issued_at = ?, expires_at = ? WHERE id = ?",
        now - 2 * DAY,
        now - 1,
        issued["license_id"],
    )
    answer = must(daemon.request("POST", "/v1/validate", {"key": issued["license_key"]}), 200)
    assert (answer["ok"], answer["reason"]) == (False, "expired")
    assert "grace_until" not in answer


def test_unknown_ids_are_404_on_every_new_admin_route(daemon):
    before = db_dump(daemon)
    missing = str(uuid.uuid4())
    for method, path, body in (
        ("PATCH", f"/v1/admin/products/{missing}", {"name": "x"}),
        ("DELETE", f"/v1/admin/products/{missing}", None),
        ("PATCH", f"/v1/admin/policies/{missing}", {"name": "x"}),
        ("PATCH", f"/v1/admin/policies/{missing}/public", {"public": True}),
        ("PATCH", f"/v1/admin/policies/{missing}/archived", {"archived": True}),
        ("DELETE", f"/v1/admin/policies/{missing}", None),
        ("GET", f"/v1/admin/discount-codes/{missing}", None),
        ("PATCH", f"/v1/admin/discount-codes/{missing}", {"description": "x"}),
        ("DELETE", f"/v1/admin/discount-codes/{missing}", None),
    ):
        answer = must(admin(daemon, method, path, body), 404)
        assert (answer["ok"], answer["error"]) == (False, "not_found"), (method, path)
        assert missing in answer["message"]
    assert db_dump(daemon) == before


def test_revenue_counts_settled_invoices_only(tmp_path):
    """A fresh shop so the sums are exact. Paid invoices are written as the payment provider's
    side would write them (Keysmith has none); a free purchase adds nothing but a license."""
    from tests.daemon_proc import DaemonProc

    with DaemonProc(tmp_path) as shop:
        slug = make_product(shop, price_sats_override=0)
        must(shop.request("POST", "/v1/purchase", {"product": slug}), 200)
        [(product_id,)] = rows(shop, "SELECT id FROM products WHERE slug = ?", slug)
        now = int(time.time())
        for amount, status, settled in (
            (1_000, "settled", now - 60),
            (2_000, "settled", now - 3 * DAY),
            (4_000, "settled", now - 20 * DAY),
            (8_000, "settled", now - 90 * DAY),
            (16_000, "pending", None),
        ):
            _write(
                shop,
                "INSERT INTO invoices (id, product_id, status, provider, amount_sats, "
                "created_at, settled_at) VALUES (?, ?, ?, 'btcpay', ?, ?, ?)",
                str(uuid.uuid4()),
                product_id,
                status,
                amount,
                now - 100 * DAY,
                settled,
            )
        summary = must(admin(shop, "GET", "/v1/admin/revenue/summary"), 200)
    assert summary == {
        "total_sats": 15_000,
        "last_24h_sats": 1_000,
        "last_7d_sats": 3_000,
        "last_30d_sats": 7_000,
        "settled_paid_invoice_count": 4,
    }


# ----- Keysat's record fields (migration 0019) -----

LONG_AGO = 1_000  # a time to backdate rows to, so a write's own time shows as a change
LONG_AGO_TEXT = "1970-01-01T00:16:40Z"


def test_a_policy_answers_keysats_updated_at_and_archived_at(daemon):
    product = _product(daemon)
    policy = _policy(daemon, product["slug"])
    assert policy["updated_at"] == policy["created_at"] and policy["archived_at"] is None
    _write(
        daemon,
        "UPDATE policies SET created_at = ?1, updated_at = ?1 WHERE id = ?2",
        LONG_AGO,
        policy["id"],
    )
    path = f"/v1/admin/policies/{policy['id']}"
    edited = must(admin(daemon, "PATCH", path, {"name": "Renamed"}), 200)
    assert edited["created_at"] == LONG_AGO_TEXT and edited["updated_at"] != LONG_AGO_TEXT
    must(admin(daemon, "PATCH", f"{path}/archived", {"archived": True}), 200)
    listing = f"/v1/admin/policies?product_id={product['id']}&include_archived=true"
    [archived] = must(admin(daemon, "GET", listing), 200)["policies"]
    assert archived["archived_at"] is not None and archived["archived"] is True
    # Archived again: the first archive's time stays; sold again: no archive time.
    _write(daemon, "UPDATE policies SET archived_at = ? WHERE id = ?", LONG_AGO, policy["id"])
    must(admin(daemon, "PATCH", f"{path}/archived", {"archived": True}), 200)
    [again] = must(admin(daemon, "GET", listing), 200)["policies"]
    assert again["archived_at"] == LONG_AGO_TEXT
    must(admin(daemon, "PATCH", f"{path}/archived", {"archived": False}), 200)
    [sold] = must(admin(daemon, "GET", listing), 200)["policies"]
    assert sold["archived_at"] is None


def test_a_code_answers_keysats_updated_at(daemon):
    product = _product(daemon)
    body = {"code": unique("upd"), "kind": "percent", "amount": 1000}
    code = must(
        admin(
            daemon, "POST", "/v1/admin/discount-codes", {**body, "product_slug": product["slug"]}
        ),
        200,
    )
    assert code["updated_at"] == code["created_at"]
    _write(daemon, "UPDATE discount_codes SET created_at = ? WHERE id = ?", LONG_AGO, code["id"])
    _write(
        daemon,
        "UPDATE discount_code_terms SET updated_at = ? WHERE code_id = ?",
        LONG_AGO,
        code["id"],
    )
    path = f"/v1/admin/discount-codes/{code['id']}"
    assert must(admin(daemon, "GET", path), 200)["code"]["updated_at"] == LONG_AGO_TEXT
    edited = must(admin(daemon, "PATCH", path, {"referrer_label": "newsletter"}), 200)
    assert edited["created_at"] == LONG_AGO_TEXT and edited["updated_at"] != LONG_AGO_TEXT


def test_an_issued_license_answers_keysats_fingerprint_metadata_and_npub(daemon):
    product = _product(daemon)
    npub = "npub1" + "q" * 58
    issued = issue(daemon, product["slug"], note="press", fingerprint="machine-7", nostr_npub=npub)
    other = issue(daemon, product["slug"])
    shown = must(admin(daemon, "GET", f"/v1/admin/licenses/{issued['license_id']}"), 200)
    assert shown["fingerprint"] == "machine-7" and shown["bound_identity"] is None
    assert shown["nostr_npub"] == npub
    # What Keysat's admin issue writes (admin.rs issue_license).
    assert shown["metadata"] == {"source": "admin_issue", "note": "press"}
    plain = must(admin(daemon, "GET", f"/v1/admin/licenses/{other['license_id']}"), 200)
    assert (plain["fingerprint"], plain["nostr_npub"]) == (None, None)
    assert plain["metadata"] == {"source": "admin_issue", "note": None}
    # Keysat's search by npub; nothing matches another npub.
    for listing in ("/v1/admin/licenses", "/v1/admin/licenses/search"):
        found = must(admin(daemon, "GET", f"{listing}?nostr_npub={npub}"), 200)["licenses"]
        assert [row["id"] for row in found] == [issued["license_id"]]
        none = must(admin(daemon, "GET", f"{listing}?nostr_npub=npub1other"), 200)["licenses"]
        assert none == []
    before = db_dump(daemon)
    refused = admin(
        daemon, "POST", "/v1/admin/licenses", {"product_slug": product["slug"], "nostr_npub": ""}
    )
    assert refused[0] == 400 and "nostr_npub" in refused[1]["message"], refused
    assert db_dump(daemon) == before


def test_public_policies_answer_keysats_buyer_copy_from_metadata(daemon):
    product = _product(daemon)
    metadata = {
        "description": "For teams",
        "highlight": True,
        "marketing_bullets": ["Priority support", "SSO"],
        "marketing_bullets_position": "below",
        "hidden_entitlements": ["internal-beta"],
    }
    _policy(daemon, product["slug"], slug="team", description="column text", metadata=metadata)
    _policy(daemon, product["slug"], slug="solo", description="Just you", highlighted=False)
    answer = must(daemon.request("GET", f"/v1/products/{product['slug']}/policies"), 200)
    shown = {p["slug"]: p for p in answer["policies"]}
    team, solo = shown["team"], shown["solo"]
    assert (team["description"], team["highlighted"]) == ("For teams", True)
    assert team["marketing_bullets"] == ["Priority support", "SSO"]
    assert team["marketing_bullets_position"] == "below"
    assert team["hidden_entitlements"] == ["internal-beta"]
    assert team["featured_discount"] is None
    # Without metadata copy: the policy's own description, Keysat's empty lists and "above".
    assert (solo["description"], solo["highlighted"]) == ("Just you", False)
    assert (solo["marketing_bullets"], solo["hidden_entitlements"]) == ([], [])
    assert solo["marketing_bullets_position"] == "above"
