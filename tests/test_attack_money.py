"""A hostile client against the real daemon, for money and disk (issue 20, items 1 to 3):
discount codes cannot be guessed (per address, and in total across any number of addresses),
a policy without a price override sells at its product's current price, and every public
route that adds rows is bounded (free purchases per address, unlimited seats by a ceiling).

The daemon runs with its default limits here (DaemonProc turns them off for other tests; an
empty value is the default). Loopback is the trusted proxy, so X-Forwarded-For names the
client, as StartOS's proxy does.
"""

from __future__ import annotations

import http.client
import json
import math
import time
from collections.abc import Callable
from typing import Any

from daemon import settings
from tests.daemon_proc import DaemonProc
from tests.test_api_support import admin, db_dump, must, rows, unique

DEFAULTS = {
    "KEYSMITH_CODE_CHECKS_PER_MINUTE": "",
    "KEYSMITH_WRONG_CODES_PER_MINUTE": "",
    "KEYSMITH_WRITE_RATE_LIMIT": "",
    "KEYSMITH_TRUSTED_PROXIES": "127.0.0.1/32",
}


class Client:
    """One kept-alive connection, so thousands of requests take seconds, not minutes."""

    def __init__(self, proc: DaemonProc) -> None:
        self._conn = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=30)

    def send(
        self, method: str, path: str, body: Any = None, address: str | None = None
    ) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if address is not None:
            headers["X-Forwarded-For"] = address
        data = None if body is None else json.dumps(body).encode()
        self._conn.request(method, path, body=data, headers=headers)
        response = self._conn.getresponse()
        return response.status, json.loads(response.read())


def _flood(send: Callable[[int], tuple[int, Any]], count: int) -> tuple[list[int], float]:
    """`count` requests as fast as one connection goes: their statuses and the seconds taken."""
    started = time.monotonic()
    statuses = [send(n)[0] for n in range(count)]
    return statuses, time.monotonic() - started


def _held_to(statuses: list[int], per_minute: int, seconds: float) -> int:
    """The burst is answered, then 429; only the tokens that came back while the flood ran
    (per_minute / 60 a second) were answered after it. Returns how many were answered."""
    assert statuses[: per_minute + 1] == [200] * per_minute + [429]
    assert set(statuses) == {200, 429}
    answered = statuses.count(200)
    assert answered <= per_minute + math.ceil(seconds * per_minute / 60), (answered, seconds)
    return answered


def _product(proc: DaemonProc, price: int, **policy: Any) -> str:
    slug = unique("app")
    product = {"slug": slug, "name": "App", "price_sats": price}
    must(admin(proc, "POST", "/v1/admin/products", product), 200)
    body = {"product_slug": slug, "slug": "default", "name": "Default", "is_default": True}
    must(admin(proc, "POST", "/v1/admin/policies", {**body, **policy}), 200)
    return slug


def _free_code(proc: DaemonProc, slug: str, code: str) -> None:
    body = {"code": code, "kind": "free_license", "amount": 0, "product_slug": slug}
    must(admin(proc, "POST", "/v1/admin/discount-codes", body), 200)


def _preview(slug: str, code: str) -> str:
    return f"/v1/discount-codes/preview?code={code}&product={slug}"


# ----- 1. discount codes -----


def test_code_checks_are_limited_per_client_address(tmp_path):
    env = {**DEFAULTS, "KEYSMITH_WRONG_CODES_PER_MINUTE": "0"}  # only the per-address limit
    with DaemonProc(tmp_path, env=env) as proc:
        slug = _product(proc, 50_000)
        client = Client(proc)
        statuses, seconds = _flood(
            lambda n: client.send("GET", _preview(slug, f"ZZ{n:04d}"), address="198.51.100.1"),
            100,
        )
        _held_to(statuses, settings.DEFAULT_CODE_CHECKS_PER_MINUTE, seconds)
        # Purchase and redeem with a code count against the same allowance.
        for path, body in (
            ("/v1/purchase", {"product": slug, "code": "ZZ0001"}),
            ("/v1/redeem", {"product": slug, "code": "ZZ0001"}),
        ):
            status, answer = client.send("POST", path, body, address="198.51.100.1")
            assert (status, answer["error"]) == (429, "rate_limited"), path
        # Another client has its own allowance.
        assert client.send("GET", _preview(slug, "ZZ0002"), address="198.51.100.2")[0] == 200


def test_wrong_codes_are_bounded_in_total_and_a_spent_budget_reveals_no_code(tmp_path):
    with DaemonProc(tmp_path, env=DEFAULTS) as proc:
        slug = _product(proc, 50_000)
        _free_code(proc, slug, "ZZ9999")
        client = Client(proc)
        # One guess from each of 1,000 addresses (a botnet, or Tor exits behind one proxy).
        started = time.monotonic()
        answers = [
            client.send("GET", _preview(slug, f"ZZ{n:04d}"), address=f"10.9.{n // 250}.{n % 250}")
            for n in range(1000)
        ]
        seconds = time.monotonic() - started
        _held_to(
            [status for status, _ in answers], settings.DEFAULT_WRONG_CODES_PER_MINUTE, seconds
        )
        assert {a["reason"] for status, a in answers if status == 200} == {"unknown_code"}
        # The right code, from a fresh address, is refused like a wrong one: nothing revealed.
        before = db_dump(proc)
        status, answer = client.send("GET", _preview(slug, "ZZ9999"), address="192.0.2.1")
        assert (status, answer["error"]) == (429, "rate_limited")
        assert "valid" not in answer and "is_free" not in answer
        for path, body in (
            ("/v1/purchase", {"product": slug, "code": "ZZ9999"}),
            ("/v1/redeem", {"product": slug, "code": "ZZ9999"}),
        ):
            status, answer = client.send("POST", path, body, address="192.0.2.2")
            assert (status, answer["error"]) == (429, "rate_limited"), path
            assert "license_key" not in answer
        assert db_dump(proc) == before
        assert rows(proc, "SELECT count(*) FROM licenses") == [(0,)]


def test_the_right_code_does_not_spend_the_wrong_code_budget(tmp_path):
    with DaemonProc(tmp_path, env=DEFAULTS) as proc:
        slug = _product(proc, 50_000)
        _free_code(proc, slug, "ZZ9999")
        client = Client(proc)
        for n in range(3 * settings.DEFAULT_WRONG_CODES_PER_MINUTE):
            status, answer = client.send("GET", _preview(slug, "zz9999"), address=f"203.0.113.{n}")
            assert (status, answer["valid"], answer["is_free"]) == (200, True, True)


def test_the_seller_is_told_a_free_code_is_guessable_and_offered_a_strong_one(tmp_path):
    with DaemonProc(tmp_path, env=DEFAULTS) as proc:
        slug = _product(proc, 50_000)
        body = {"kind": "free_license", "amount": 0, "product_slug": slug}
        weak = must(
            admin(proc, "POST", "/v1/admin/discount-codes", {**body, "code": "ZZ9999"}), 200
        )
        # 26^2 x 10^4 shapes, half tried on average, at 10 a minute: 234.7 days < 365.
        assert "234.7 days on average" in weak["weak"]
        offered = weak["weak"].rsplit("e.g. ", 1)[1]
        strong = must(
            admin(proc, "POST", "/v1/admin/discount-codes", {**body, "code": offered}), 200
        )
        assert "weak" not in strong
        # A small discount is no prize: no warning, however short the code.
        small = {"code": "AB12", "kind": "percent", "amount": 500}
        assert "weak" not in must(admin(proc, "POST", "/v1/admin/discount-codes", small), 200)
        listed = must(admin(proc, "GET", "/v1/admin/discount-codes"), 200)["codes"]
        assert [c["code"] for c in listed if "weak" in c] == ["ZZ9999"]


def test_a_code_that_is_free_or_half_off_in_effect_is_called_weak_too(tmp_path):
    """A set price of 0, or a fixed amount off of at least half the product's price, gives
    away what a free-license code does: the seller is warned of those as well."""
    with DaemonProc(tmp_path, env=DEFAULTS) as proc:
        slug = _product(proc, 50_000)
        cases = {
            "SP0000": ("set_price", 0, True),
            "SP0001": ("set_price", 20_000, True),
            "SP0002": ("set_price", 30_000, False),
            "FX0000": ("fixed_sats", 25_000, True),
            "FX0001": ("fixed_sats", 60_000, True),
            "FX0002": ("fixed_sats", 1_000, False),
        }
        for code, (kind, amount, _) in cases.items():
            body = {"code": code, "kind": kind, "amount": amount, "product_slug": slug}
            must(admin(proc, "POST", "/v1/admin/discount-codes", body), 200)
        listed = must(admin(proc, "GET", "/v1/admin/discount-codes"), 200)["codes"]
        weak = sorted(c["code"] for c in listed if "weak" in c)
        assert weak == sorted(code for code, (*_, flagged) in cases.items() if flagged)


# ----- 2. a policy without an override follows its product's price -----


def test_a_policy_without_override_sells_at_the_products_current_price(tmp_path):
    with DaemonProc(tmp_path) as proc:
        slug = _product(proc, 0)
        product_id = must(admin(proc, "GET", f"/v1/products/{slug}"), 200)["id"]
        must(admin(proc, "PATCH", f"/v1/admin/products/{product_id}", {"price_sats": 5000}), 200)
        before = db_dump(proc)
        status, answer = proc.request(
            "POST", "/v1/purchase", {"product": slug, "policy_slug": "default"}
        )
        assert (status, answer["error"]) == (503, "payment_not_configured"), answer
        assert "license_key" not in answer
        assert db_dump(proc) == before
        listed = must(proc.request("GET", f"/v1/products/{slug}/policies"), 200)["policies"]
        assert [p["price_sats"] for p in listed] == [5000]
        listed = must(admin(proc, "GET", f"/v1/admin/policies?product_slug={slug}"), 200)
        (policy,) = listed["policies"]
        assert (policy["price_sats"], policy["price_sats_override"]) == (5000, None)
        # Keysat's edit: a number is the policy's own price, null follows the product again.
        path = f"/v1/admin/policies/{policy['id']}"
        own = must(admin(proc, "PATCH", path, {"price_sats_override": 700}), 200)
        assert (own["price_sats"], own["price_sats_override"]) == (700, 700)
        back = must(admin(proc, "PATCH", path, {"price_sats_override": None}), 200)
        assert (back["price_sats"], back["price_sats_override"]) == (5000, None)


# ----- 3. public writes are bounded -----


def test_free_purchases_are_limited_per_client_address(tmp_path):
    with DaemonProc(tmp_path, env=DEFAULTS) as proc:
        slug = _product(proc, 0)
        client = Client(proc)
        statuses, seconds = _flood(
            lambda _: client.send(
                "POST", "/v1/purchase", {"product": slug}, address="198.51.100.7"
            ),
            700,
        )
        sold = _held_to(statuses, settings.DEFAULT_WRITE_RATE_LIMIT_PER_MINUTE, seconds)
        # Each answered purchase wrote one license and one invoice; each refused one nothing.
        assert rows(proc, "SELECT count(*) FROM licenses") == [(sold,)]
        assert rows(proc, "SELECT count(*) FROM invoices") == [(sold,)]


def test_unlimited_seats_stop_at_the_servers_ceiling_with_a_clear_error(tmp_path):
    ceiling = 50
    with DaemonProc(tmp_path, env={"KEYSMITH_UNLIMITED_SEATS": str(ceiling)}) as proc:
        slug = _product(proc, 0, max_machines=0)
        key = must(admin(proc, "POST", "/v1/admin/licenses", {"product_slug": slug}), 200)[
            "license_key"
        ]
        client = Client(proc)
        answers = [
            client.send("POST", "/v1/machines/activate", {"key": key, "fingerprint": f"fp-{n}"})
            for n in range(ceiling + 30)
        ]
        assert [a["ok"] for _, a in answers] == [True] * ceiling + [False] * 30
        status, refused = answers[-1]
        assert (status, refused["reason"], refused["seat_ceiling"]) == (
            200,
            "too_many_machines",
            ceiling,
        )
        assert f"caps at {ceiling} active machines (KEYSMITH_UNLIMITED_SEATS" in refused["message"]
        active = "SELECT count(*) FROM machines WHERE deactivated_at IS NULL"
        assert rows(proc, active) == [(ceiling,)]
        # validate with a new fingerprint says the same ceiling.
        status, answer = client.send("POST", "/v1/validate", {"key": key, "fingerprint": "new"})
        assert (answer["reason"], answer["seat_ceiling"]) == ("too_many_machines", ceiling)
        assert rows(proc, active) == [(ceiling,)]


def test_activations_are_limited_per_client_address(tmp_path):
    with DaemonProc(tmp_path, env=DEFAULTS) as proc:
        slug = _product(proc, 0, max_machines=0)
        key = must(admin(proc, "POST", "/v1/admin/licenses", {"product_slug": slug}), 200)[
            "license_key"
        ]
        client = Client(proc)
        statuses, seconds = _flood(
            lambda n: client.send(
                "POST",
                "/v1/machines/activate",
                {"key": key, "fingerprint": f"fp-{n}"},
                address="198.51.100.9",
            ),
            200,
        )
        taken = _held_to(statuses, settings.DEFAULT_WRITE_RATE_LIMIT_PER_MINUTE, seconds)
        assert rows(proc, "SELECT count(*) FROM machines") == [(taken,)]
