"""A seller's software, using the published Keysat client unchanged, against the real daemon.

Each test is a story a seller would tell: "I revoked the key and the very next start-up was
refused", "the third laptop was told there were no seats left", "the free code worked once".
"""

from __future__ import annotations

import time
import uuid

import pytest
from keysat_licensing_client import (
    Client,
    LicensingError,
    PublicKey,
    RedeemFreeOptions,
    StartPurchaseOptions,
    Verifier,
    hash_fingerprint,
)

from daemon.licensing import keys
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

daemon = pytest.fixture(scope="module", name="daemon")(serving_daemon)


@pytest.fixture
def client(daemon):
    return Client(daemon.url, timeout=10)


def test_every_key_verifies_offline_with_the_served_public_key(daemon, client):
    product = make_product(daemon, entitlements=[])
    issued = issue(daemon, product)
    verifier = Verifier(PublicKey.from_pem(client.fetch_pubkey_pem()))
    ok = verifier.verify(issued["license_key"])
    assert str(ok.license_id) == issued["license_id"]
    assert str(ok.product_id) == issued["product_id"]
    assert ok.expires_at == 0 and not ok.is_fingerprint_bound

    tampered = flip_one_payload_char(issued["license_key"])
    with pytest.raises(LicensingError) as refused:
        verifier.verify(tampered)
    assert refused.value.kind in ("bad_signature", "bad_format")
    assert client.validate(tampered).reason in ("bad_signature", "bad_format")


def test_service_info_and_pubkey_agree(daemon, client):
    info = must(daemon.request("GET", "/"), 200)
    assert info["public_key_pem"] == client.fetch_pubkey_pem()
    assert info["key_format"] == "LIC1"


def test_revocation_is_seen_by_the_very_next_validation(daemon, client):
    product = make_product(daemon)
    issued = issue(daemon, product)
    key = issued["license_key"]
    # Warm every fast path first: the key is verified once and then served from memory.
    for _ in range(20):
        assert client.validate(key, product_slug=product).ok
    must(
        admin(
            daemon,
            "POST",
            f"/v1/admin/licenses/{issued['license_id']}/revoke",
            {"reason": "chargeback"},
        ),
        200,
    )
    answer = client.validate(key, product_slug=product)
    assert (answer.ok, answer.reason) == (False, "revoked")
    # Offline the key still verifies: revocation is an online fact, as the client documents.
    Verifier(PublicKey.from_pem(client.fetch_pubkey_pem())).verify(key)


def test_suspension_refuses_until_unsuspended(daemon, client):
    product = make_product(daemon)
    issued = issue(daemon, product)
    license_path = f"/v1/admin/licenses/{issued['license_id']}"
    must(admin(daemon, "POST", f"{license_path}/suspend"), 200)
    assert client.validate(issued["license_key"]).reason == "suspended"
    must(admin(daemon, "POST", f"{license_path}/unsuspend"), 200)
    assert client.validate(issued["license_key"]).ok


def test_a_license_past_its_expiry_is_refused(daemon, client):
    product = make_product(daemon)
    expires_at = int(time.time()) + 2
    issued = issue(daemon, product, expires_at=expires_at)
    first = client.validate(issued["license_key"])
    assert first.ok and first.expires_at is not None
    offline = Verifier(PublicKey.from_pem(client.fetch_pubkey_pem())).verify(issued["license_key"])
    assert offline.expires_at == expires_at
    while time.time() < expires_at + 0.2:
        time.sleep(0.2)
    answer = client.validate(issued["license_key"])
    assert (answer.ok, answer.reason) == (False, "expired")


def test_policy_duration_sets_expiry_and_trial_flag(daemon, client):
    product = make_product(daemon, duration_seconds=14 * 86_400, is_trial=True)
    issued = issue(daemon, product)
    ok = Verifier(PublicKey.from_pem(client.fetch_pubkey_pem())).verify(issued["license_key"])
    assert ok.is_trial
    assert ok.expires_at - ok.issued_at == 14 * 86_400
    answer = client.validate(issued["license_key"])
    assert answer.ok and answer.is_trial


def test_a_fingerprint_bound_key_works_only_on_its_machine(daemon, client):
    product = make_product(daemon)
    machine = hash_fingerprint("serial-XJ-1042")  # what the seller's app sends
    issued = issue(daemon, product, fingerprint=machine)
    ok = Verifier(PublicKey.from_pem(client.fetch_pubkey_pem())).verify(issued["license_key"])
    assert ok.is_fingerprint_bound
    assert ok.fingerprint_hash.hex() == hash_fingerprint(machine)

    assert client.validate(issued["license_key"], fingerprint=machine).ok
    other = client.validate(issued["license_key"], fingerprint=hash_fingerprint("other-box"))
    assert (other.ok, other.reason) == (False, "fingerprint_mismatch")
    missing = client.validate(issued["license_key"])
    assert (missing.ok, missing.reason) == (False, "fingerprint_mismatch")


def test_single_seat_license_binds_to_the_first_machine_until_deactivated(daemon, client):
    product = make_product(daemon, seats=1)
    key = issue(daemon, product)["license_key"]
    first, second = hash_fingerprint("desk-1"), hash_fingerprint("desk-2")
    bound = client.validate(key, fingerprint=first)
    assert bound.ok and bound.machine_id
    assert client.validate(key, fingerprint=first).machine_id == bound.machine_id
    assert client.validate(key, fingerprint=second).reason == "fingerprint_mismatch"
    assert client.deactivate(key, first, reason="new computer").ok
    assert client.validate(key, fingerprint=second).ok


def test_seats_are_counted_across_activate_heartbeat_and_deactivate(daemon, client):
    product = make_product(daemon, seats=2)
    key = issue(daemon, product)["license_key"]
    laptop, desktop, tablet = (hash_fingerprint(n) for n in ("laptop", "desktop", "tablet"))

    one = client.activate(key, laptop, hostname="laptop.local", platform="linux-x86_64")
    assert (one.ok, one.active_count, one.max_machines) == (True, 1, 2)
    two = client.activate(key, desktop)
    assert (two.ok, two.active_count) == (True, 2)
    again = client.activate(key, laptop)  # the same machine again takes no new seat
    assert (again.ok, again.machine_id, again.active_count) == (True, one.machine_id, 2)

    full = client.activate(key, tablet)
    assert (full.ok, full.reason, full.active_count) == (False, "too_many_machines", 2)
    assert client.validate(key, fingerprint=tablet).reason == "too_many_machines"

    assert client.heartbeat(key, laptop).ok
    assert client.heartbeat(key, tablet).reason == "not_activated"

    freed = client.deactivate(key, laptop)
    assert (freed.ok, freed.active_count) == (True, 1)
    assert client.deactivate(key, laptop).reason == "not_found"
    assert client.activate(key, tablet).ok
    assert client.validate(key, fingerprint=tablet).ok
    assert client.heartbeat(key, laptop).reason == "not_activated"


def test_validate_names_the_product_mismatch(daemon, client):
    product, other = make_product(daemon), make_product(daemon)
    key = issue(daemon, product)["license_key"]
    assert client.validate(key, product_slug=product).ok
    assert client.validate(key, product_slug=other).reason == "product_mismatch"


def test_a_genuine_signature_on_an_unknown_license_is_not_found(daemon, client):
    # Signed with the server's own issuer key (read from its database), so only the
    # license lookup can refuse it.
    private = rows(daemon, "SELECT private_key FROM issuer_keys WHERE active = 1")[0][0]
    issuer = keys.IssuerKey.from_private_bytes(private)
    forged = keys.issue_key(
        issuer,
        keys.KeyPayload(
            product_id=uuid.uuid4(), license_id=uuid.uuid4(), issued_at=int(time.time())
        ),
    )
    Verifier(PublicKey.from_pem(client.fetch_pubkey_pem())).verify(forged)
    assert client.validate(forged).reason == "not_found"
    before = db_dump(daemon)
    with pytest.raises(LicensingError) as unknown:
        client.activate(forged, hash_fingerprint("any-box"))
    assert "HTTP 404" in str(unknown.value) and "license" in str(unknown.value)
    assert db_dump(daemon) == before


def test_garbage_keys_are_answered_not_failed(daemon, client):
    other_issuer = keys.IssuerKey.generate()
    foreign = keys.issue_key(
        other_issuer,
        keys.KeyPayload(product_id=uuid.uuid4(), license_id=uuid.uuid4(), issued_at=1_700_000_000),
    )
    for key, reason in [
        ("", "bad_format"),
        ("LIC1-NOT-BASE32!", "bad_format"),
        ("LIC1-" + "A" * 5000 + "-AA", "bad_format"),
        (foreign, "bad_signature"),
        (foreign, "bad_signature"),  # the remembered outcome says the same
    ]:
        answer = client.validate(key)
        assert (answer.ok, answer.reason) == (False, reason)
    _status, body = daemon.request("GET", "/metrics")
    assert 'keysmith_validations_total{result="bad_signature"}' in body


def test_a_free_license_code_is_redeemed_once_and_not_twice(daemon, client):
    product = make_product(daemon, entitlements=[])
    code = unique("LAUNCH").upper()
    must(
        admin(
            daemon,
            "POST",
            "/v1/admin/discount-codes",
            {
                "code": code,
                "kind": "free_license",
                "product_slug": product,
                "max_uses": 1,
            },
        ),
        200,
    )
    redeemed = client.redeem_free_license(
        product, code.lower(), RedeemFreeOptions(buyer_email="ada@example.com")
    )
    assert client.validate(redeemed.license_key, product_slug=product).ok
    ok = Verifier(PublicKey.from_pem(client.fetch_pubkey_pem())).verify(redeemed.license_key)
    assert str(ok.license_id) == redeemed.license_id

    before = db_dump(daemon)
    with pytest.raises(LicensingError) as replay:
        client.redeem_free_license(product, code)
    # Keysat answers every refused redemption with 400.
    assert "HTTP 400" in str(replay.value) and "already been used 1 time(s)" in str(replay.value)
    assert db_dump(daemon) == before
    redemptions = rows(
        daemon,
        "SELECT r.license_id, i.provider, i.status FROM "
        "discount_redemptions r JOIN invoices i ON i.id = r.invoice_id "
        "JOIN discount_codes c ON c.id = r.code_id WHERE c.code = ?",
        code,
    )
    assert [tuple(r) for r in redemptions] == [(redeemed.license_id, "free", "settled")]


def test_codes_that_cannot_be_redeemed_say_why(daemon, client):
    product = make_product(daemon)
    percent = unique("SAVE")
    must(
        admin(
            daemon,
            "POST",
            "/v1/admin/discount-codes",
            {"code": percent, "kind": "percent", "amount": 2000},
        ),
        200,
    )
    before = db_dump(daemon)
    for code, fragment in [(percent, "not a free-license code"), ("NO-SUCH-CODE", "HTTP 400")]:
        with pytest.raises(LicensingError) as refused:
            client.redeem_free_license(product, code)
        assert fragment in str(refused.value)
    with pytest.raises(LicensingError) as unknown_product:
        client.redeem_free_license("no-such-product", percent)
    assert "product 'no-such-product'" in str(unknown_product.value)
    assert db_dump(daemon) == before


def test_public_policies_list_only_public_active_tiers_in_order(daemon, client):
    product = tiered_product(daemon)

    listed = client.list_public_policies(product)
    assert listed.product.slug == product
    assert listed.product.base_price_sats == 10_000
    assert [e.name for e in listed.product.entitlements_catalog] == ["Cloud sync"]
    assert [p.slug for p in listed.policies] == ["trial", "pro"]
    trial, pro = listed.policies
    assert (trial.is_trial, trial.trial_days, trial.duration_seconds) == (True, 7, 7 * 86_400)
    assert (pro.max_machines, pro.entitlements, pro.highlighted) == (3, ["sync"], True)
    with pytest.raises(LicensingError) as missing:
        client.list_public_policies("no-such-product")
    assert "HTTP 404" in str(missing.value)


def test_a_free_tier_is_bought_polled_and_waited_for_with_the_client(daemon, client):
    product = make_product(daemon, price_sats_override=0)
    session = client.start_purchase(product, StartPurchaseOptions(buyer_email="fay@example.org"))
    assert (session.amount_sats, session.base_price_sats, session.discount_applied_sats) == (
        0,
        0,
        0,
    )
    # As Keysat fills them for a free purchase: no checkout, a `free-` reference.
    assert session.checkout_url == ""
    assert session.btcpay_invoice_id == f"free-{session.invoice_id}"
    poll = client.poll_purchase(session.invoice_id)
    assert (poll.status, poll.amount_sats, poll.license_key is not None) == ("settled", 0, True)
    key = client.wait_for_license(session.invoice_id, interval_s=0.01, timeout_s=5)
    assert key == poll.license_key
    assert client.validate(key, product_slug=product).ok


def test_a_redeemed_code_buys_through_the_purchase_flow(daemon, client):
    product = make_product(daemon)
    code = unique("FREE")
    must(
        admin(
            daemon,
            "POST",
            "/v1/admin/discount-codes",
            {"code": code, "kind": "free_license", "product_slug": product},
        ),
        200,
    )
    session = client.start_purchase(product, StartPurchaseOptions(code=code.lower()))
    assert (session.amount_sats, session.base_price_sats, session.discount_applied_sats) == (
        0,
        50_000,
        50_000,
    )
    key = client.wait_for_license(session.invoice_id, interval_s=0.01, timeout_s=5)
    answer = client.validate(key)
    assert answer.ok and answer.license_id == client.poll_purchase(session.invoice_id).license_id


def test_a_paid_purchase_says_no_payment_provider_is_configured(daemon, client):
    product = make_product(daemon)
    before = db_dump(daemon)
    with pytest.raises(LicensingError) as refused:
        client.start_purchase(product, StartPurchaseOptions(buyer_email="bob@example.com"))
    assert "HTTP 503" in str(refused.value)
    assert "no payment provider is configured" in str(refused.value)
    with pytest.raises(LicensingError) as unknown:
        client.poll_purchase(str(uuid.uuid4()))
    assert "HTTP 404" in str(unknown.value)
    assert db_dump(daemon) == before
