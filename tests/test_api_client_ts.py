"""A seller's app using Keysat's TypeScript client (@keysat/licensing-client 0.3.0) unchanged,
against the real daemon: every call it can make without a payment provider.

The client's source is vendored unchanged in tests/clients/keysat-client-ts (the npm registry
does not serve it); it is built here as its author builds it (its own tsconfig, with the
TypeScript in the project's node_modules) after `npm ci` of its two pinned dependencies, then
driven by tests/clients/run_ts_client.mjs, which prints each call's answer as JSON. The
Python client's own stories are in tests/test_api_client.py; these are the same stories told
to the TypeScript client, whose field mapping (and error handling) is its own.

Left out, because they need a payment provider: startPurchase of a priced tier (answered 503
payment_not_configured, asserted below to reach the app as a LicensingError) and so
waitForLicense on a paid invoice.
"""

from __future__ import annotations

import time
import uuid

import pytest

from daemon.licensing import keys
from tests.daemon_proc import DaemonProc
from tests.test_api_support import (
    admin,
    db_dump,
    flip_one_payload_char,
    issue,
    make_product,
    must,
    rows,
    serving_daemon,
    tiered_product,
    unique,
)
from tests.ts_client import build_client, call, drive, needs_node, ref, thrown, value, verdict

pytestmark = needs_node
daemon = pytest.fixture(scope="module", name="daemon")(serving_daemon)
client_js = pytest.fixture(scope="module", name="client_js")(build_client)


def served_pem(proc: DaemonProc) -> str:
    """The served public key, for the offline calls (fetchPubkeyPem is tested on its own)."""
    return must(proc.request("GET", "/v1/pubkey"), 200)["public_key_pem"]


def test_keys_verify_offline_with_the_served_public_key(daemon, client_js):
    product = make_product(daemon)
    issued = issue(daemon, product)
    key, tampered = issued["license_key"], flip_one_payload_char(issued["license_key"])
    pem, base, ok, timed, bad, online = drive(
        daemon,
        client_js,
        call("fetchPubkeyPem"),
        call("baseUrl"),
        call("verify", ref(0), key),
        call("verifyWithTime", ref(0), key, int(time.time()) + 10 * 365 * 86_400),
        call("verify", ref(0), tampered),
        call("validate", tampered),
    )
    assert value(pem) == must(daemon.request("GET", "/"), 200)["public_key_pem"]
    assert value(base) == daemon.url
    verified = value(ok)
    assert (verified["licenseId"], verified["productId"]) == (
        issued["license_id"],
        issued["product_id"],
    )
    payload = verified["payload"]
    assert (payload["version"], payload["expiresAt"], payload["isFingerprintBound"]) == (
        2,
        0,
        False,
    )
    assert value(timed)["licenseId"] == issued["license_id"]  # perpetual: never expired
    assert thrown(bad)["code"] in ("bad_signature", "bad_format")
    assert verdict(online) in ((False, "bad_signature"), (False, "bad_format"))


def test_validate_maps_every_field_of_a_good_key(daemon, client_js):
    product = make_product(daemon, seats=3, duration_seconds=14 * 86_400, is_trial=True)
    issued = issue(daemon, product)
    by_slug, by_options, offline = drive(
        daemon,
        client_js,
        call("validate", issued["license_key"], product),
        call(
            "validate",
            issued["license_key"],
            {
                "productSlug": product,
                "fingerprint": "box-1",
                "hostname": "box",
                "platform": "linux",
            },
        ),
        call("verifyWithTime", served_pem(daemon), issued["license_key"], int(time.time())),
    )
    answer = value(by_slug)
    assert answer["ok"] and "reason" not in answer
    assert (answer["licenseId"], answer["productId"], answer["productSlug"]) == (
        issued["license_id"],
        issued["product_id"],
        product,
    )
    assert (answer["status"], answer["isTrial"], answer["maxMachines"]) == ("active", True, 3)
    assert answer["expiresAt"] and answer["issuedAt"]
    seated = value(by_options)
    assert seated["ok"] and seated["machineId"]
    machines = rows(
        daemon, "SELECT hostname, platform FROM machines WHERE id = ?", seated["machineId"]
    )
    assert [tuple(m) for m in machines] == [("box", "linux")]
    payload = value(offline)["payload"]
    assert payload["isTrial"] and payload["expiresAt"] - payload["issuedAt"] == 14 * 86_400


def test_revoked_and_suspended_keys_are_refused_by_the_next_validation(daemon, client_js):
    product = make_product(daemon)
    revoked, suspended = issue(daemon, product), issue(daemon, product)
    warm = drive(
        daemon, client_js, *(call("validate", i["license_key"]) for i in (revoked, suspended))
    )
    assert [verdict(a) for a in warm] == [(True, None), (True, None)]
    licenses = "/v1/admin/licenses"
    must(admin(daemon, "POST", f"{licenses}/{revoked['license_id']}/revoke", {"reason": "cb"}), 200)
    must(admin(daemon, "POST", f"{licenses}/{suspended['license_id']}/suspend"), 200)
    after = drive(
        daemon,
        client_js,
        call("validate", revoked["license_key"], product),
        call("validate", suspended["license_key"]),
        call("verify", served_pem(daemon), revoked["license_key"]),  # offline it still verifies
    )
    assert verdict(after[0]) == (False, "revoked")
    assert verdict(after[1]) == (False, "suspended")
    assert value(after[2])["licenseId"] == revoked["license_id"]
    must(admin(daemon, "POST", f"{licenses}/{suspended['license_id']}/unsuspend"), 200)
    (back,) = drive(daemon, client_js, call("validate", suspended["license_key"]))
    assert verdict(back) == (True, None)


def test_a_license_past_its_expiry_is_refused_online_and_offline(daemon, client_js):
    product = make_product(daemon)
    expires_at = int(time.time()) + 2
    key = issue(daemon, product, expires_at=expires_at)["license_key"]
    (first,) = drive(daemon, client_js, call("validate", key))
    assert value(first)["ok"] and value(first)["expiresAt"]
    while time.time() < expires_at + 0.2:
        time.sleep(0.2)
    online, offline = drive(
        daemon,
        client_js,
        call("validate", key),
        call("verifyWithTime", served_pem(daemon), key, int(time.time())),
    )
    assert verdict(online) == (False, "expired")
    assert thrown(offline)["code"] == "expired"


def test_unknown_mismatched_and_foreign_keys_are_answered_not_thrown(daemon, client_js):
    product, other = make_product(daemon), make_product(daemon)
    key = issue(daemon, product)["license_key"]
    private = rows(daemon, "SELECT private_key FROM issuer_keys WHERE active = 1")[0][0]
    payload = keys.KeyPayload(
        product_id=uuid.uuid4(), license_id=uuid.uuid4(), issued_at=int(time.time())
    )
    forged = keys.issue_key(keys.IssuerKey.from_private_bytes(private), payload)
    foreign = keys.issue_key(keys.IssuerKey.generate(), payload)
    answers = drive(
        daemon,
        client_js,
        call("validate", forged),
        call("validate", key, other),
        call("validate", foreign),
        call("validate", "LIC1-NOT-BASE32!"),
    )
    assert [verdict(a) for a in answers] == [
        (False, "not_found"),
        (False, "product_mismatch"),
        (False, "bad_signature"),
        (False, "bad_format"),
    ]


def test_a_fingerprint_bound_key_verifies_and_validates_only_on_its_machine(daemon, client_js):
    product = make_product(daemon)
    issued = issue(daemon, product, fingerprint="serial-XJ-1042")
    pem = served_pem(daemon)
    mine, elsewhere, online, other = drive(
        daemon,
        client_js,
        call("verifyWithFingerprint", pem, issued["license_key"], "serial-XJ-1042"),
        call("verifyWithFingerprint", pem, issued["license_key"], "other-box"),
        call("validate", issued["license_key"], {"fingerprint": "serial-XJ-1042"}),
        call("validate", issued["license_key"], {"fingerprint": "other-box"}),
    )
    assert value(mine)["payload"]["isFingerprintBound"]
    assert thrown(elsewhere)["code"] == "bad_signature"
    assert verdict(online) == (True, None)
    assert verdict(other) == (False, "fingerprint_mismatch")


def test_seats_are_counted_across_activate_heartbeat_and_deactivate(daemon, client_js):
    key = issue(daemon, make_product(daemon, seats=2))["license_key"]
    answers = drive(
        daemon,
        client_js,
        call("activate", key, "laptop", {"hostname": "laptop.local", "platform": "linux-x86_64"}),
        call("activate", key, "desktop"),
        call("activate", key, "laptop"),
        call("activate", key, "tablet"),
        call("validate", key, {"fingerprint": "tablet"}),
        call("heartbeat", key, "laptop"),
        call("heartbeat", key, "tablet"),
        call("deactivate", key, "laptop", "new computer"),
        call("deactivate", key, "laptop"),
        call("activate", key, "tablet"),
        call("heartbeat", key, "laptop"),
    )
    got = [value(a) for a in answers]
    one, two, again, full, tablet, beat, no_beat, freed, gone, moved, late = got
    assert (one["ok"], one["activeCount"], one["maxMachines"]) == (True, 1, 2)
    assert (two["ok"], two["activeCount"]) == (True, 2)
    assert (again["ok"], again["machineId"], again["activeCount"]) == (True, one["machineId"], 2)
    assert (full["ok"], full["reason"], full["activeCount"]) == (False, "too_many_machines", 2)
    assert (tablet["ok"], tablet["reason"]) == (False, "too_many_machines")
    assert (beat["ok"], no_beat["reason"]) == (True, "not_activated")
    assert (freed["ok"], freed["activeCount"]) == (True, 1)
    assert (gone["ok"], gone["reason"]) == (False, "not_found")
    assert (moved["ok"], late["reason"]) == (True, "not_activated")
    reasons = rows(daemon, "SELECT deactivate_reason FROM machines WHERE id = ?", one["machineId"])
    assert [tuple(r) for r in reasons] == [("new computer",)]


def test_public_policies_are_mapped_as_the_tier_picker_reads_them(daemon, client_js):
    product = tiered_product(daemon)
    listed, missing = drive(
        daemon,
        client_js,
        call("listPublicPolicies", product),
        call("listPublicPolicies", "no-such-product"),
    )
    got = value(listed)
    assert got["product"] == {
        "slug": product,
        "name": "Tiered",
        "description": "An app with tiers",
        "basePriceSats": 10_000,
        "entitlementsCatalog": [{"slug": "sync", "name": "Cloud sync", "description": ""}],
    }
    assert [p["slug"] for p in got["policies"]] == ["trial", "pro"]
    trial, pro = got["policies"]
    assert (trial["isTrial"], trial["trialDays"], trial["durationSeconds"]) == (True, 7, 604_800)
    assert (trial["priceSats"], pro["priceSats"]) == (10_000, 30_000)
    assert (pro["maxMachines"], pro["entitlements"], pro["highlighted"]) == (3, ["sync"], True)
    assert "HTTP 404" in thrown(missing)["message"]


def test_a_free_license_code_is_redeemed_once_and_not_twice(daemon, client_js):
    product = make_product(daemon)
    code = unique("LAUNCH").upper()
    body = {"code": code, "kind": "free_license", "product_slug": product, "max_uses": 1}
    must(admin(daemon, "POST", "/v1/admin/discount-codes", body), 200)
    redeemed, validated, verified = drive(
        daemon,
        client_js,
        call("redeemFreeLicense", product, code.lower(), {"buyerEmail": "ada@example.com"}),
        call("validate", ref(0, "licenseKey"), product),
        call("verify", served_pem(daemon), ref(0, "licenseKey")),
    )
    got = value(redeemed)
    assert got["licenseKey"].startswith("LIC1-") and got["invoiceId"] and got["redemptionId"]
    assert verdict(validated) == (True, None)
    assert value(verified)["licenseId"] == got["licenseId"]
    before = db_dump(daemon)
    replay, unknown = drive(
        daemon,
        client_js,
        call("redeemFreeLicense", product, code),
        call("redeemFreeLicense", product, "NO-SUCH-CODE"),
    )
    assert "HTTP 400" in thrown(replay)["message"]
    assert "already been used 1 time(s)" in thrown(replay)["message"]
    assert "HTTP 400" in thrown(unknown)["message"]
    assert db_dump(daemon) == before
    emails = rows(daemon, "SELECT buyer_email FROM licenses WHERE id = ?", got["licenseId"])
    assert [tuple(e) for e in emails] == [("ada@example.com",)]


def test_a_free_tier_is_bought_polled_and_waited_for(daemon, client_js):
    product = make_product(daemon)  # its default tier costs 50,000 sats
    free = {"product_slug": product, "slug": "community", "name": "Community",
            "price_sats_override": 0}  # fmt: skip
    must(admin(daemon, "POST", "/v1/admin/policies", free), 200)
    bought, polled, waited, validated = drive(
        daemon,
        client_js,
        call(
            "startPurchase", product, {"policySlug": "community", "buyerEmail": "fay@example.org"}
        ),
        call("pollPurchase", ref(0, "invoiceId")),
        call("waitForLicense", ref(0, "invoiceId"), {"intervalMs": 10, "timeoutMs": 5000}),
        call("validate", ref(2), product),
    )
    session = value(bought)
    assert (session["amountSats"], session["checkoutUrl"]) == (0, "")
    assert session["btcpayInvoiceId"] == f"free-{session['invoiceId']}"
    assert session["invoiceId"] in session["pollUrl"]
    poll = value(polled)
    assert (poll["invoiceId"], poll["status"], poll["amountSats"]) == (
        session["invoiceId"],
        "settled",
        0,
    )
    assert value(waited) == poll["licenseKey"]
    assert verdict(validated) == (True, None)
    tier = rows(
        daemon,
        "SELECT p.slug FROM licenses l JOIN policies p ON p.id = l.policy_id WHERE l.id = ?",
        poll["licenseId"],
    )
    assert [tuple(t) for t in tier] == [("community",)]


@pytest.mark.parametrize(
    "terms",
    [{"kind": "free_license"}, {"kind": "percent", "amount": 10_000}],
    ids=["free-license", "percent-100"],
)
def test_a_full_discount_code_buys_through_the_purchase_flow(daemon, client_js, terms):
    product = make_product(daemon)
    code = unique("FREE")
    body = {"code": code, "product_slug": product, **terms}
    must(admin(daemon, "POST", "/v1/admin/discount-codes", body), 200)
    bought, waited, polled, validated = drive(
        daemon,
        client_js,
        call("startPurchase", product, {"code": code.lower()}),
        call("waitForLicense", ref(0, "invoiceId"), {"intervalMs": 10, "timeoutMs": 5000}),
        call("pollPurchase", ref(0, "invoiceId")),
        call("validate", ref(1), product),
    )
    assert (value(bought)["amountSats"], value(bought)["checkoutUrl"]) == (0, "")
    assert value(waited) == value(polled)["licenseKey"]
    assert value(polled)["status"] == "settled"
    assert value(validated)["licenseId"] == value(polled)["licenseId"]


def test_a_paid_purchase_reaches_the_app_as_a_licensing_error(daemon, client_js):
    """The one call left out: paying needs a provider. The app gets the client's own error."""
    product = make_product(daemon)
    before = db_dump(daemon)
    paid, unknown, waited = drive(
        daemon,
        client_js,
        call("startPurchase", product, {"buyerEmail": "bob@example.com"}),
        call("pollPurchase", str(uuid.uuid4())),
        call("waitForLicense", str(uuid.uuid4()), {"intervalMs": 10, "timeoutMs": 100}),
    )
    refused = thrown(paid)
    assert refused["code"] == "server_error"
    assert "HTTP 503" in refused["message"] and "payment_not_configured" in refused["message"]
    assert "HTTP 404" in thrown(unknown)["message"]
    assert "HTTP 404" in thrown(waited)["message"]
    assert db_dump(daemon) == before


def test_a_rate_limited_validate_or_heartbeat_is_answered_not_thrown(tmp_path, client_js):
    with DaemonProc(tmp_path, env={"KEYSMITH_RATE_LIMIT": "2"}) as proc:
        key = issue(proc, make_product(proc))["license_key"]
        answers = drive(
            proc,
            client_js,
            call("activate", key, "fp-1"),
            *[call("validate", key) for _ in range(3)],
            *[call("heartbeat", key, "fp-1") for _ in range(3)],
        )
    assert [verdict(a) for a in answers] == [
        (True, None),
        (True, None),
        (True, None),
        (False, "rate_limited"),
        (True, None),
        (True, None),
        (False, "rate_limited"),
    ]
