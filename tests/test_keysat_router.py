"""Keysat's router, route by route, from Keysat's own source (issue 21).

The route list, the fields of Keysat's request and response structs and the keys its handlers
write come from Keysat's source (`tests/keysat_source.py`; the facts are kept in
`tests/keysat/api.json` with the commit they were read at). Every route is either served
here, driven with a Keysat-shaped request (only fields of Keysat's request struct) against the
real daemon and answering Keysat's status and JSON keys, or named in the README's one table of
differences on purpose. A route in neither fails; so does a table entry naming a route or field
Keysat no longer has. Keysmith-only extra keys are allowed (README: extras stay).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from daemon.api import mount  # noqa: F401  (every handler module registers into the table)
from daemon.api.table import ENDPOINTS
from tests import keysat_source
from tests.test_api_support import admin, must, serving_daemon, unique
from tests.test_keysat_routes import _post_pem

daemon = pytest.fixture(scope="module", name="daemon")(serving_daemon)

KEYSAT = keysat_source.load_snapshot()
ROUTES = [(r["method"], r["path"]) for r in KEYSAT["routes"]]
HANDLER = {(r["method"], r["path"]): r["handler"] for r in KEYSAT["routes"]}
# Served outside the route table: the daemon's own health route (Keysat's `{ok}` and more).
SERVED = {(e.method, e.path) for e in ENDPOINTS} | {("GET", "/healthz"), ("GET", "/recover")}
README = Path(__file__).resolve().parent.parent / "README.md"
DAY = 86_400


# ----- the README's table of differences on purpose -----


def _difference_rows() -> list[str]:
    """The first column (Keysat's side) of each row of the README's differences table."""
    text = README.read_text()
    start = text.index("**Where Keysmith differs from Keysat on purpose**")
    rows = []
    for line in text[start:].splitlines()[1:]:
        if rows and not line.strip().startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if line.strip().startswith("|") and cells[0] not in ("Keysat", "---|---|---"):
            rows.append(cells[0])
    return rows


ROUTE_TOKEN = re.compile(r"`(?:(GET|POST|PUT|PATCH|DELETE) )?(/[^`\s?]*)`")
# `Struct.field`, either side a glob (`*.tip_*`): fields of Keysat's left out on purpose.
FIELD_TOKEN = re.compile(r"`([A-Z*][\w*]*\.[\w*]+)`")


def _route_patterns() -> list[tuple[str | None, str]]:
    return [m.groups() for row in _difference_rows() for m in ROUTE_TOKEN.finditer(row)]


def _matches(pattern: tuple[str | None, str], route: tuple[str, str]) -> bool:
    method, path = pattern
    return method in (None, route[0]) and fnmatch.fnmatchcase(route[1], path)


def _on_purpose(route: tuple[str, str]) -> bool:
    return any(_matches(p, route) for p in _route_patterns())


def _exempt_fields() -> list[str]:
    return [m.group(1) for row in _difference_rows() for m in FIELD_TOKEN.finditer(row)]


def _exempt(struct: str, field: str) -> bool:
    """Whether the README's table leaves `field` of Keysat's `struct` out on purpose."""
    named = f"{struct.split('::')[-1]}.{field.rstrip('?')}"
    return any(fnmatch.fnmatchcase(named, pattern) for pattern in _exempt_fields())


# ----- what Keysat answers -----


def _struct(name: str) -> list[str]:
    return KEYSAT["structs"][name]


def _reads(route: tuple[str, str], kind: str) -> str | None:
    """The struct Keysat's handler for `route` reads with `Query<...>` or `Json<...>`."""
    return KEYSAT["handlers"][HANDLER[route]].get(kind)


def _required(name: str) -> set[str]:
    """The keys Keysat always writes for `name` (not the ones left out when empty), less the
    ones the README's table leaves out on purpose."""
    return {f for f in _struct(name) if not f.endswith("?") and not _exempt(name, f)}


def _taken(name: str) -> list[str]:
    """The fields of Keysat's request struct `name` Keysmith takes (not left out on purpose)."""
    return [f.rstrip("?") for f in _struct(name) if not _exempt(name, f)]


@dataclass(frozen=True, init=False)
class Keys:
    """Keys written by the handler's `json!` literal (checked against Keysat's source), in the
    answer or in `answer[under]` (each item, for a list)."""

    names: tuple[str, ...]
    under: str | None

    def __init__(self, *names: str, under: str | None = None) -> None:
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "under", under)


@dataclass(frozen=True)
class Struct:
    """The answer (or `answer[under]`, or each item of that list) is Keysat's struct."""

    name: str
    under: str | None = None


Spec = Keys | Struct


def _missing(answer: Any, spec: Spec) -> set[str]:
    value = answer if spec.under is None else answer[spec.under]
    items = value if isinstance(value, list) else [value]
    assert items, f"{spec}: an empty list shows no keys; the case must make one"
    expected = set(spec.names) if isinstance(spec, Keys) else _required(spec.name)
    return set().union(*(expected - set(item) for item in items))


# ----- Keysat-shaped requests against one shop -----


class Shop:
    """What the cases act on, made with Keysat-shaped requests. `fresh_*` makes a new one for a
    case that changes or deletes it."""

    def __init__(self, daemon) -> None:
        self.daemon = daemon
        self.hook = self.fresh_endpoint()
        self.product = self.fresh_product()
        self.slug = self.product["slug"]
        self.policy = self.fresh_policy(self.slug, "monthly")
        self.license = self.fresh_license()
        self.key = self.license["license_key"]
        self.activate(self.key, "fp-shop")
        self.code = self.fresh_code()
        bought = {"product": self.slug, "policy_slug": "monthly", "buyer_email": "b@x.org"}
        self.invoice_id = must(daemon.request("POST", "/v1/purchase", bought), 200)["invoice_id"]

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        return must(admin(self.daemon, method, path, body), 200)

    def fresh_product(self) -> dict:
        body = {"slug": unique("ks"), "name": "Keysat", "description": "d", "price_sats": 10_000}
        return self.admin("POST", "/v1/admin/products", body)

    def fresh_policy(self, product_slug: str, slug: str) -> dict:
        body = {
            "product_slug": product_slug,
            "name": slug.title(),
            "slug": slug,
            "duration_seconds": 30 * DAY,
            "grace_seconds": DAY,
            "max_machines": 3,
            "price_sats_override": 0,
        }
        return self.admin("POST", "/v1/admin/policies", body)

    def fresh_license(self) -> dict:
        body = {"product_slug": self.slug, "policy_slug": "monthly", "buyer_email": "a@x.org"}
        return self.admin("POST", "/v1/admin/licenses", body)

    def fresh_code(self) -> dict:
        body = {"code": unique("K"), "kind": "percent", "amount": 1000, "product_slug": self.slug}
        return self.admin("POST", "/v1/admin/discount-codes", body)

    def fresh_endpoint(self) -> dict:
        body = {"url": "https://hooks.example/k", "event_types": ["license.issued"]}
        return self.admin("POST", "/v1/admin/webhook-endpoints", body)

    def activate(self, key: str, fingerprint: str) -> dict:
        body = {"key": key, "fingerprint": fingerprint}
        return must(self.daemon.request("POST", "/v1/machines/activate", body), 200)

    def fresh_machine(self) -> str:
        return self.activate(self.fresh_license()["license_key"], "fp-kick")["machine_id"]

    def suspended_license(self) -> str:
        license_id = self.fresh_license()["license_id"]
        self.admin("POST", f"/v1/admin/licenses/{license_id}/suspend", {"reason": "x"})
        return license_id

    def delivery(self) -> str:
        listed = self.admin("GET", f"/v1/admin/webhook-deliveries?endpoint_id={self.hook['id']}")
        return listed["deliveries"][0]["id"]


Request = tuple[str, Any]  # the concrete path and the body (None: no body)


@dataclass(frozen=True)
class Case:
    request: Callable[[Shop], Request]
    answer: tuple[Spec, ...]
    status: int = 200


def _c(request, *answer: Spec, status: int = 200) -> Case:
    return Case(request, answer, status)


A = "/v1/admin"
# Keysat's delete of a product or policy: what went with it.
DELETED = ("ok", "deleted", "force", "cascaded_licenses", "cascaded_invoices")
DELETED += ("cascaded_machines", "cascaded_redemptions")
CASES: dict[tuple[str, str], Case] = {
    ("GET", "/"): _c(
        lambda s: ("/", None),
        Keys(
            "service",
            "version",
            "operator",
            "public_key_pem",
            "key_algorithm",
            "key_format_version",
        ),
    ),
    ("GET", "/healthz"): _c(lambda s: ("/healthz", None), Keys("ok")),
    ("GET", "/v1/pubkey"): _c(lambda s: ("/v1/pubkey", None), Keys("algorithm", "public_key_pem")),
    ("GET", "/v1/products"): _c(
        lambda s: ("/v1/products", None), Struct("models::Product", "products")
    ),
    ("GET", "/v1/products/{slug}"): _c(
        lambda s: (f"/v1/products/{s.slug}", None), Struct("models::Product")
    ),
    ("POST", "/v1/purchase"): _c(
        lambda s: ("/v1/purchase", {"product": s.slug, "policy_slug": "monthly"}),
        Struct("purchase::StartPurchaseResp"),
    ),
    ("GET", "/v1/purchase/{invoice_id}"): _c(
        lambda s: (f"/v1/purchase/{s.invoice_id}", None),
        Keys("invoice_id", "status", "product_id", "amount_sats", "license_key", "license_id"),
    ),
    ("POST", "/v1/redeem"): _c(
        lambda s: (
            "/v1/redeem",
            {"product": s.slug, "code": _free_code(s), "policy_slug": "monthly"},
        ),
        Struct("redeem::RedeemResp"),
    ),
    ("POST", "/v1/validate"): _c(
        lambda s: ("/v1/validate", {"key": s.key, "fingerprint": "fp-shop"}),
        Struct("validate::ValidateResp"),
    ),
    ("POST", "/v1/recover"): _c(
        lambda s: ("/v1/recover", {"invoice_id": s.invoice_id, "email": "b@x.org"}),
        Keys("license_key", "license_id", "product_id", "issued_at", "expires_at", "entitlements"),
    ),
    ("POST", "/v1/machines/activate"): _c(
        lambda s: ("/v1/machines/activate", {"key": s.key, "fingerprint": "fp-2", "hostname": "h"}),
        Struct("machines::ActivateResp"),
    ),
    ("POST", "/v1/machines/heartbeat"): _c(
        lambda s: ("/v1/machines/heartbeat", {"key": s.key, "fingerprint": "fp-shop"}),
        Keys("ok", "machine_id"),
    ),
    ("POST", "/v1/machines/deactivate"): _c(
        lambda s: ("/v1/machines/deactivate", _seat_to_free(s)),
        Keys("ok"),
    ),
    ("POST", f"{A}/products"): _c(
        lambda s: (f"{A}/products", {"slug": unique("kp"), "name": "N", "price_sats": 5}),
        Struct("models::Product"),
    ),
    ("PATCH", f"{A}/products/{{id}}"): _c(
        lambda s: (f"{A}/products/{s.product['id']}", {"description": "edited"}),
        Struct("models::Product"),
    ),
    ("DELETE", f"{A}/products/{{id}}"): _c(
        lambda s: (f"{A}/products/{s.fresh_product()['id']}", None),
        Keys(*DELETED, "cascaded_policies", "cascaded_codes"),
    ),
    ("PATCH", f"{A}/products/{{id}}/active"): _c(
        lambda s: (f"{A}/products/{s.product['id']}/active", {"active": True}),
        Keys("ok"),
    ),
    ("GET", f"{A}/licenses"): _c(
        lambda s: (f"{A}/licenses?product_id={s.product['id']}", None),
        Struct("models::License", "licenses"),
    ),
    ("POST", f"{A}/licenses"): _c(
        lambda s: (f"{A}/licenses", {"product_slug": s.slug, "policy_slug": "monthly"}),
        Struct("admin::IssueLicenseResp"),
    ),
    ("GET", f"{A}/licenses/search"): _c(
        lambda s: (f"{A}/licenses/search?buyer_email=a@x.org", None),
        Struct("models::License", "licenses"),
    ),
    ("GET", f"{A}/licenses/summary"): _c(
        lambda s: (f"{A}/licenses/summary", None),
        Keys("total", "active", "suspended", "revoked", "last_24h", "last_7d"),
    ),
    ("GET", f"{A}/licenses/counts"): _c(
        lambda s: (f"{A}/licenses/counts", None), Keys("by_product", "by_policy")
    ),
    ("GET", f"{A}/revenue/summary"): _c(
        lambda s: (f"{A}/revenue/summary", None),
        Keys(
            "total_sats",
            "last_24h_sats",
            "last_7d_sats",
            "last_30d_sats",
            "settled_paid_invoice_count",
        ),
    ),
    ("POST", f"{A}/licenses/{{id}}/revoke"): _c(
        lambda s: (f"{A}/licenses/{s.fresh_license()['license_id']}/revoke", {"reason": "r"}),
        Keys("ok"),
    ),
    ("POST", f"{A}/licenses/{{id}}/suspend"): _c(
        lambda s: (f"{A}/licenses/{s.fresh_license()['license_id']}/suspend", {"reason": "r"}),
        Keys("ok"),
    ),
    ("POST", f"{A}/licenses/{{id}}/unsuspend"): _c(
        lambda s: (f"{A}/licenses/{s.suspended_license()}/unsuspend", None), Keys("ok")
    ),
    ("GET", f"{A}/policies"): _c(
        lambda s: (f"{A}/policies?product_slug={s.slug}", None),
        Struct("models::Policy", "policies"),
    ),
    ("POST", f"{A}/policies"): _c(
        lambda s: (
            f"{A}/policies",
            {"product_slug": s.slug, "name": "Y", "slug": unique("y"), "max_machines": 1},
        ),
        Struct("models::Policy"),
    ),
    ("PATCH", f"{A}/policies/{{id}}"): _c(
        lambda s: (f"{A}/policies/{s.policy['id']}", {"grace_seconds": 2 * DAY}),
        Struct("models::Policy"),
    ),
    ("DELETE", f"{A}/policies/{{id}}"): _c(
        lambda s: (f"{A}/policies/{s.fresh_policy(s.slug, unique('gone'))['id']}", None),
        Keys(*DELETED),
    ),
    ("PATCH", f"{A}/policies/{{id}}/active"): _c(
        lambda s: (f"{A}/policies/{s.policy['id']}/active", {"active": True}),
        Keys("ok"),
    ),
    ("PATCH", f"{A}/policies/{{id}}/public"): _c(
        lambda s: (f"{A}/policies/{s.policy['id']}/public", {"public": True}),
        Keys("ok"),
    ),
    ("PATCH", f"{A}/policies/{{id}}/archived"): _c(
        lambda s: (
            f"{A}/policies/{s.fresh_policy(s.slug, unique('old'))['id']}/archived",
            {"archived": True},
        ),
        Keys("ok", "archived"),
    ),
    ("GET", "/v1/products/{slug}/policies"): _c(
        lambda s: (f"/v1/products/{s.slug}/policies", None),
        Keys(
            "slug",
            "name",
            "description",
            "base_price_sats",
            "entitlements_catalog",
            under="product",
        ),
        # Keysat's recurring fields (is_recurring, renewal_period_days, trial_days) are
        # subscriptions: in the README's payments row.
        Keys(
            "slug",
            "name",
            "description",
            "price_sats",
            "duration_seconds",
            "max_machines",
            "is_trial",
            "entitlements",
            "marketing_bullets",
            "marketing_bullets_position",
            "hidden_entitlements",
            "highlighted",
            "featured_discount",
            under="policies",
        ),
    ),
    ("GET", f"{A}/api-keys"): _c(
        lambda s: (f"{A}/api-keys", _api_key(s) and None),
        Struct("api_keys::ApiKeyListEntry", "api_keys"),
    ),
    ("POST", f"{A}/api-keys"): _c(
        lambda s: (f"{A}/api-keys", {"label": "ci", "role": "read-only"}),
        Struct("api_keys::CreateApiKeyResp"),
    ),
    ("DELETE", f"{A}/api-keys/{{id}}"): _c(
        lambda s: (f"{A}/api-keys/{_api_key(s)}", None), Keys("ok", "revoked_at")
    ),
    ("POST", f"{A}/licenses/{{id}}/change-tier"): _c(
        lambda s: (
            f"{A}/licenses/{s.fresh_license()['license_id']}/change-tier",
            {"to_policy_slug": _tier(s), "skip_payment": True, "reason": "comp"},
        ),
        Keys(
            "ok",
            "applied",
            "license_id",
            "tier_change_id",
            "skip_payment",
            "from_policy_slug",
            "to_policy_slug",
        ),
    ),
    ("GET", f"{A}/machines"): _c(
        lambda s: (f"{A}/machines?product_slug={s.slug}", None),
        Struct("models::Machine", "machines"),
    ),
    ("POST", f"{A}/machines/{{id}}/deactivate"): _c(
        lambda s: (f"{A}/machines/{s.fresh_machine()}/deactivate", {"reason": "kick"}),
        Keys("ok"),
    ),
    ("GET", f"{A}/webhook-endpoints"): _c(
        lambda s: (f"{A}/webhook-endpoints", None),
        Struct("models::WebhookEndpoint", "endpoints"),
    ),
    ("POST", f"{A}/webhook-endpoints"): _c(
        lambda s: (f"{A}/webhook-endpoints", {"url": "https://hooks.example/n"}),
        Struct("models::WebhookEndpoint"),
    ),
    ("PATCH", f"{A}/webhook-endpoints/{{id}}/active"): _c(
        lambda s: (f"{A}/webhook-endpoints/{s.hook['id']}/active", {"active": True}),
        Keys("ok"),
    ),
    ("DELETE", f"{A}/webhook-endpoints/{{id}}"): _c(
        lambda s: (f"{A}/webhook-endpoints/{s.fresh_endpoint()['id']}", None), Keys("ok")
    ),
    ("GET", f"{A}/webhook-deliveries"): _c(
        lambda s: (f"{A}/webhook-deliveries", None),
        Struct("models::WebhookDelivery", "deliveries"),
    ),
    ("POST", f"{A}/webhook-deliveries/{{id}}/retry"): _c(
        lambda s: (f"{A}/webhook-deliveries/{s.delivery()}/retry", None),
        Struct("models::WebhookDelivery"),
    ),
    ("GET", f"{A}/db-info"): _c(
        lambda s: (f"{A}/db-info", None),
        Keys("db_path", "db_size_bytes", "last_write_at", "counts"),
    ),
    ("GET", f"{A}/discount-codes"): _c(
        lambda s: (f"{A}/discount-codes", None), Struct("models::DiscountCode", "codes")
    ),
    ("POST", f"{A}/discount-codes"): _c(
        lambda s: (
            f"{A}/discount-codes",
            {"code": unique("N"), "kind": "fixed_sats", "amount": 5, "max_uses": 3},
        ),
        Struct("models::DiscountCode"),
    ),
    ("GET", f"{A}/discount-codes/{{id}}"): _c(
        lambda s: (f"{A}/discount-codes/{s.code['id']}", None),
        Keys("code", "redemptions"),
        Struct("models::DiscountCode", "code"),
    ),
    ("PATCH", f"{A}/discount-codes/{{id}}"): _c(
        lambda s: (f"{A}/discount-codes/{s.code['id']}", {"description": "spring"}),
        Struct("models::DiscountCode"),
    ),
    ("DELETE", f"{A}/discount-codes/{{id}}"): _c(
        lambda s: (f"{A}/discount-codes/{s.fresh_code()['id']}", None), Keys("ok", "deleted")
    ),
    ("PATCH", f"{A}/discount-codes/{{id}}/active"): _c(
        lambda s: (f"{A}/discount-codes/{s.code['id']}/active", {"active": True}),
        Keys("ok"),
    ),
    ("GET", "/v1/discount-codes/preview"): _c(
        lambda s: (f"/v1/discount-codes/preview?code={s.code['code']}&product={s.slug}", None),
        Keys(
            "valid",
            "code",
            "kind",
            "is_free",
            "base_price_sats",
            "discount_applied_sats",
            "final_price_sats",
            "amount_pct",
            "message",
        ),
    ),
    ("GET", f"{A}/audit"): _c(
        lambda s: (f"{A}/audit?limit=5", None), Struct("models::AuditEntry", "entries")
    ),
    ("GET", f"{A}/settings/operator-name"): _c(
        lambda s: (f"{A}/settings/operator-name", None),
        Keys("stored", "effective", "fallback_env"),
    ),
    ("POST", f"{A}/settings/operator-name"): _c(
        lambda s: (f"{A}/settings/operator-name", {"name": "Ada"}),
        Keys("ok", "operator_name"),
    ),
    # Keysat refuses an import once any license exists (its `Conflict`), as the shop here has.
    ("POST", f"{A}/import-issuer-key"): _c(
        lambda s: (f"{A}/import-issuer-key", _pem()), Keys(), status=409
    ),
    ("GET", "/v1/issuer/public-key"): _c(
        lambda s: ("/v1/issuer/public-key", None),
        Keys("public_key_pem", "key_algorithm", "key_format_version"),
    ),
    # Keysat's document is a string constant, not a `json!` literal; each describes its own API.
    ("GET", "/v1/openapi.json"): _c(lambda s: ("/v1/openapi.json", None)),
    # The buyer's recovery page (HTML, no keys).
    ("GET", "/recover"): _c(lambda s: ("/recover", None)),
}


def _free_code(shop: Shop) -> str:
    body = {"code": unique("F"), "kind": "free_license", "amount": 0, "product_slug": shop.slug}
    return shop.admin("POST", f"{A}/discount-codes", body)["code"]


def _seat_to_free(shop: Shop) -> dict:
    key = shop.fresh_license()["license_key"]
    shop.activate(key, "fp-leave")
    return {"key": key, "fingerprint": "fp-leave", "reason": "moved"}


def _api_key(shop: Shop) -> str:
    return shop.admin("POST", f"{A}/api-keys", {"label": "k", "role": "support"})["id"]


def _tier(shop: Shop) -> str:
    return shop.fresh_policy(shop.slug, unique("pro"))["slug"]


def _pem() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture(scope="module")
def shop(daemon) -> Shop:
    return Shop(daemon)


def _send(shop: Shop, method: str, path: str, body: Any) -> tuple[int, Any]:
    if isinstance(body, bytes):
        return _post_pem(shop.daemon, body)
    if path.startswith("/v1/admin/"):
        return admin(shop.daemon, method, path, body)
    return shop.daemon.request(method, path, body)


def _params(reads: str | None = None) -> list:
    """The Keysat routes served here (those that read a query or a body, if `reads` says)."""
    return [
        pytest.param(*route, id=f"{route[0]} {route[1]}")
        for route in ROUTES
        if route in SERVED and (reads is None or _reads(route, reads))
    ]


# ----- the tests -----


@pytest.mark.parametrize(("method", "path"), _params())
def test_a_keysat_route_answers_keysat_s_status_and_keys(shop, method, path):
    case = CASES[(method, path)]
    concrete, body = case.request(shop)
    if isinstance(body, dict):  # only fields of the struct Keysat's handler reads
        struct = _reads((method, path), "json")
        fields = {f.rstrip("?") for f in _struct(struct)}
        assert set(body) <= fields, f"not Keysat's {struct}: {set(body) - fields}"
    status, answer = _send(shop, method, concrete, body)
    assert status == case.status, f"{method} {concrete}: Keysat answers {case.status}: {answer}"
    missing = set().union(*(_missing(answer, spec) for spec in case.answer))
    assert not missing, f"{method} {path} lacks Keysat's keys {sorted(missing)}: {answer}"


# A value of the right kind for each query field of Keysat's (a filter may match nothing).
QUERY_VALUES: dict[str, Callable[[Shop], str]] = {
    "product_id": lambda s: s.product["id"],
    "product_slug": lambda s: s.slug,
    "product": lambda s: s.slug,
    "license_id": lambda s: s.license["license_id"],
    "endpoint_id": lambda s: s.hook["id"],
    "invoice_id": lambda s: s.invoice_id,
    "code": lambda s: s.code["code"],
    "policy_slug": lambda s: "monthly",
    "buyer_email": lambda s: "a@x.org",
    "nostr_npub": lambda s: "npub1" + "q" * 58,
    "status": lambda s: "pending",
    "action": lambda s: "product.create",
    "limit": lambda s: "5",
    "include_inactive": lambda s: "true",
    "include_archived": lambda s: "true",
    "force": lambda s: "false",
}


@pytest.mark.parametrize(("method", "path"), _params(reads="query"))
def test_every_query_field_keysat_takes_is_taken(shop, method, path):
    concrete, body = CASES[(method, path)].request(shop)
    fields = _taken(_reads((method, path), "query"))
    query = urlencode({field: QUERY_VALUES[field](shop) for field in fields})
    status, answer = _send(shop, method, f"{concrete.partition('?')[0]}?{query}", body)
    assert status == 200, f"{method} {path}?{query}: {answer}"


@pytest.mark.parametrize(("method", "path"), _params(reads="json"))
def test_every_body_field_keysat_takes_is_a_field_here(shop, method, path):
    """Each field of Keysat's request struct, added to the case's body as `null` (absent, to
    serde): another refusal may come (a null where a value is needed), never "not a field"."""
    refused = []
    for field in _taken(_reads((method, path), "json")):
        concrete, body = CASES[(method, path)].request(shop)
        if isinstance(body, dict) and field not in body:
            status, answer = _send(shop, method, concrete, {**body, field: None})
            if status == 400 and f"'{field}' is not a field" in answer["message"]:
                refused.append(field)
    assert not refused, f"{method} {path} refuses Keysat's fields {refused}"


def test_every_keysat_route_is_served_or_differs_on_purpose_in_the_readme():
    neither = [r for r in ROUTES if r not in SERVED and not _on_purpose(r)]
    assert not neither, f"Keysat routes neither served nor in the README's table: {neither}"


def test_every_served_keysat_route_has_a_case_and_every_case_a_keysat_route():
    driven = {r for r in ROUTES if r in SERVED}
    assert driven - set(CASES) == set(), "served Keysat routes with no case here"
    assert set(CASES) - set(ROUTES) == set(), "cases for routes Keysat does not have"


def test_each_json_literal_key_expected_is_one_keysat_s_handler_writes():
    for route, case in CASES.items():
        written = set(KEYSAT["handlers"][HANDLER[route]]["json_keys"])
        for spec in case.answer:
            if isinstance(spec, Keys):
                assert set(spec.names) <= written, (route, set(spec.names) - written)


def test_every_readme_row_names_a_route_or_field_keysat_has():
    for pattern in _route_patterns():
        assert any(_matches(pattern, r) for r in ROUTES), f"no Keysat route {pattern}"
    fields = [
        f"{name.split('::')[-1]}.{field.rstrip('?')}"
        for name, all_fields in KEYSAT["structs"].items()
        for field in all_fields
    ]
    for pattern in _exempt_fields():
        assert fnmatch.filter(fields, pattern), f"no field of Keysat's structs is {pattern}"


def test_the_kept_facts_are_what_keysat_s_source_says():
    commit = KEYSAT["origin"]["commit"]
    if keysat_source.mirror_commit(commit) is None:
        pytest.skip(f"no Keysat mirror holding {commit} at {keysat_source.MIRROR}")
    assert keysat_source.parse_mirror(commit) == KEYSAT
