"""The console's one door into the licensing layer: every call it makes to `Licensing`.

When the service's method names or shapes change, this module changes and no page does.
Form fields go through the admin API's own request models (`daemon.licensing.models`, with the
API's names and limits), so a value the API refuses is refused here with the same message, and the
service raises the same errors for what only it can check. A refusal is a `Refused` naming the
form field it is about (None for the form as a whole); nothing was written.
"""

from __future__ import annotations

import json
import re
import sqlite3
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, get_args
from urllib.parse import quote

from daemon.licensing import access, integrations, models, wire
from daemon.licensing.answers import plain
from daemon.licensing.codes import BASIS_POINTS_PER_PERCENT
from daemon.licensing.errors import BadRequest, LicensingError
from daemon.licensing.service import DISCOUNT_KINDS, LICENSE_STATUSES, Licensing
from daemon.storage import Degraded, fault_of

# Rows per page (a phone on a slow link gets a page, not thousands of rows); the API's limits.
LICENSE_PAGE = 100
MACHINE_PAGE = 200
MAX_MACHINES = 5000
AUDIT_PAGE = 100
DELIVERY_PAGE = 50
_INTEGER = re.compile(r"^-?[0-9]{1,20}$")
_NAMED_FIELD = re.compile(r"^'([a-z_]+)'")
SECONDS_PER_DAY = 86_400
MAX_DAYS = 100 * 366  # the API's bound on seconds (models.Seconds), in days
T = TypeVar("T")

STATUSES = LICENSE_STATUSES
KINDS = DISCOUNT_KINDS
# Every event (`*`, also those of a later version) first, then each one.
EVENT_TYPES: tuple[str, ...] = (integrations.EVERY_EVENT, *get_args(integrations.EventType))
ROLES: tuple[str, ...] = get_args(integrations.Role)


class Refused(Exception):
    """`status` is the one the API answers for the same refusal. `errors` holds every field's
    message of a form refused for several fields at once."""

    def __init__(
        self,
        field: str | None,
        message: str,
        status: int = 400,
        errors: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.status = status
        self.errors = errors if errors else ({field: message} if field else {})


_STATUS = {"bad_request": 400, "not_found": 404, "conflict": 409}


@dataclass(frozen=True)
class Counts:
    products: int
    active_licenses: int
    machines: int


def _body(form: Mapping[str, str], numbers: tuple[str, ...] = ()) -> dict[str, Any]:
    """A form as the JSON body the API would get: empty fields absent, digits as integers.
    A number field holding anything else stays text, so the API's rule refuses it as it would
    refuse a string in JSON."""
    body: dict[str, Any] = {}
    for name, value in form.items():
        if value == "":
            continue
        if name in numbers and _INTEGER.match(value.strip()):
            body[name] = int(value.strip())
        else:
            body[name] = value
    return body


async def _service(call: Any, fields: tuple[str, ...] = ()) -> Any:
    """Await a service call; its refusal names a form field when its message starts with one."""
    try:
        return await call
    except LicensingError as e:
        named = _NAMED_FIELD.match(e.message)
        field = named[1] if named else _about(e.message)
        field = field if field in fields else None
        raise Refused(field, _sentence(e), _STATUS.get(e.code, 400)) from None
    except sqlite3.IntegrityError as e:  # as the API: rolled back, a conflict, never a 500
        message = f"The database refused the change ({e}); nothing was written"
        raise Refused(None, message, 409) from None
    except sqlite3.OperationalError as e:
        fault = fault_of(e)
        if fault is None:
            raise
        words = Degraded(fault, str(e), "").as_dict()
        raise Refused(None, f"{words['message']}. What to do: {words['remedy']}.", 503) from None


# The form field a service refusal belongs next to when its message names none: an unknown
# product or policy, or a slug or code already taken.
_ABOUT = (
    (re.compile(r"^product '[^']*' already has a policy"), "slug"),
    (re.compile(r"^a product with slug"), "slug"),
    (re.compile(r"^a discount code"), "code"),
    (re.compile(r"^product '"), "product_slug"),
    (re.compile(r"^policy '"), "policy_slug"),
)


def _about(message: str) -> str | None:
    return next((field for pattern, field in _ABOUT if pattern.match(message)), None)


def _sentence(e: LicensingError) -> str:
    text = e.message if e.code != "not_found" else f"there is no {e.message}"
    return text[:1].upper() + text[1:]


def _id(value: str, what: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        example = "3f2a0c1e-9b7d-4c1a-8e2f-0a1b2c3d4e5f"
        raise Refused(None, f"{what} must be an id like {example}", 404) from None


def _flag(form: Mapping[str, str], name: str) -> bool:
    return form.get(name) == "on"


def _setter(
    method: Callable[[Licensing], Callable[[str, bool], Awaitable[Any]]], what: str, value: bool
) -> Callable[[Licensing, str], Awaitable[None]]:
    """A row button setting one flag of the row `what` (e.g. active) to `value`; `method`
    picks the use case's method from the service."""

    async def change(service: Licensing, row_id: str) -> None:
        await _service(method(service)(_id(row_id, what), value))

    return change


def _one_row(
    method: Callable[[Licensing], Callable[[str], Awaitable[Any]]], what: str
) -> Callable[[Licensing, str], Awaitable[None]]:
    """A row button acting on the row `what` alone (delete, revoke, retry)."""

    async def change(service: Licensing, row_id: str) -> None:
        await _service(method(service)(_id(row_id, what)))

    return change


# ----- overview -----


def counts(db_path: Path) -> Counts:
    """Row counts for the overview. The licensing layer has no count method, and listing every
    license to count it would not stay fast; a read-only connection counts instead."""
    conn = sqlite3.connect(f"file:{quote(str(db_path))}?mode=ro", uri=True, timeout=5.0)
    try:
        (products,) = conn.execute("SELECT count(*) FROM products").fetchone()
        (active,) = conn.execute("SELECT count(*) FROM licenses WHERE status = 'active'").fetchone()
        (machines,) = conn.execute(
            "SELECT count(*) FROM machines WHERE deactivated_at IS NULL"
        ).fetchone()
    finally:
        conn.close()
    return Counts(products, active, machines)


@dataclass(frozen=True)
class Sales:
    month: str  # YYYY-MM, UTC
    product_slug: str
    sats: int
    invoices: int


def revenue_by_product(db_path: Path) -> list[Sales]:
    """Settled invoices per month and product, newest month first. The API answers only the
    shop's totals (Keysat's summary); a read-only connection groups them, as `counts` does."""
    conn = sqlite3.connect(f"file:{quote(str(db_path))}?mode=ro", uri=True, timeout=5.0)
    try:
        found = conn.execute(
            "SELECT strftime('%Y-%m', i.settled_at, 'unixepoch'), p.slug, "
            "sum(i.amount_sats), count(*) FROM invoices AS i "
            "JOIN products AS p ON p.id = i.product_id WHERE i.status = 'settled' "
            "GROUP BY 1, 2 ORDER BY 1 DESC, 2 LIMIT 600"
        ).fetchall()
    finally:
        conn.close()
    return [Sales(*row) for row in found]


# ----- products and policies -----

PRODUCT_FIELDS = (
    "slug",
    "name",
    "description",
    "price_sats",
    "price_currency",
    "price_value",
    "entitlements_catalog",
    "metadata",
)


async def products(service: Licensing) -> list[dict[str, Any]]:
    return plain(await service.catalogue.admin_products())


async def product(service: Licensing, product_id: str) -> dict[str, Any]:
    product_id = _id(product_id, "The product")
    found = [p for p in await products(service) if p["id"] == product_id]
    if not found:
        raise Refused(None, f"There is no product {product_id}", 404)
    return found[0]


def _product_body(form: Mapping[str, str], errors: dict[str, str]) -> dict[str, Any]:
    body = _body(form, numbers=("price_sats", "price_value"))
    _check_shown_price(body, errors)
    body["entitlements_catalog"] = _catalog_lines(body.pop("entitlements_catalog", ""))
    body["metadata"] = _json_object(form, errors)
    return body


async def create_product(service: Licensing, form: Mapping[str, str]) -> dict[str, Any]:
    errors: dict[str, str] = {}
    body = _product_body(form, errors)
    if not body["entitlements_catalog"]:
        del body["entitlements_catalog"]
    request = _model(models.ProductCreate, body, PRODUCT_FIELDS, errors)
    return plain(await _service(service.catalogue.create_product(request), PRODUCT_FIELDS))


async def update_product(service: Licensing, product_id: str, form: Mapping[str, str]) -> None:
    """Every field of the edit form is sent: an emptied catalogue, description or metadata is
    cleared."""
    errors: dict[str, str] = {}
    body = {"description": "", **_product_body(form, errors)}
    body["metadata"] = body["metadata"] or {}
    _sats_alone_unless_shown(body, "price_sats")
    body.pop("slug", None)  # a product's slug is in its licenses' keys: never changed
    request = _model(models.ProductUpdate, body, PRODUCT_FIELDS, errors)
    await _service(
        service.catalogue.update_product(_id(product_id, "The product"), request), PRODUCT_FIELDS
    )


activate_product = _setter(lambda s: s.catalogue.set_product_active, "The product", True)
deactivate_product = _setter(lambda s: s.catalogue.set_product_active, "The product", False)
delete_product = _one_row(lambda s: s.catalogue.delete_product, "The product")


def _check_shown_price(body: dict[str, Any], errors: dict[str, str]) -> None:
    """The price shown beside the sats one: a currency and a value, both or neither."""
    if "price_currency" in body:  # Keysat's codes are upper case; `usd` means the same
        body["price_currency"] = body["price_currency"].strip().upper()
    for given, missing in (("price_currency", "price_value"), ("price_value", "price_currency")):
        if given in body and missing not in body:
            errors[missing] = (
                "Give the shown price's currency (USD) and its value (1299 for 12.99) "
                "together, or neither for a price in sats alone."
            )


def _sats_alone_unless_shown(body: dict[str, Any], own_price: str) -> None:
    """An edit whose shown price was emptied: the price is in sats alone again (without this,
    the API keeps the old shown price, since an absent field stays as it is)."""
    if "price_currency" not in body and isinstance(body.get(own_price), int):
        body["price_currency"] = models.SATS_CURRENCIES[0]
        body["price_value"] = body[own_price]


def _catalog_lines(text: str) -> list[dict[str, str]]:
    """'slug: Name' per line, as the API's [{slug, name}] list."""
    entries = []
    for line in text.splitlines():
        if line.strip():
            slug, _, name = line.partition(":")
            entries.append({"slug": slug.strip(), "name": name.strip()})
    return entries


POLICY_FIELDS = (
    "product_slug",
    "slug",
    "name",
    "description",
    "price_sats",
    "price_currency",
    "price_value",
    "duration_days",
    "grace_days",
    "max_machines",
    "entitlements",
    "sort_order",
    "metadata",
)
POLICY_FLAGS = ("is_trial", "is_default", "public", "highlighted")


async def policies(service: Licensing) -> list[dict[str, Any]]:
    return plain(await service.catalogue.admin_policies(models.PolicyQuery(include_archived=True)))


async def policy(service: Licensing, policy_id: str) -> dict[str, Any]:
    policy_id = _id(policy_id, "The policy")
    found = [p for p in await policies(service) if p["id"] == policy_id]
    if not found:
        raise Refused(None, f"There is no policy {policy_id}", 404)
    return found[0]


def _policy_body(form: Mapping[str, str], errors: dict[str, str]) -> dict[str, Any]:
    """The policy form as the API's body: days as seconds, the price as the override."""
    days = {name: _days(form, name, errors) for name in ("duration_days", "grace_days")}
    body = _body(
        {k: v for k, v in form.items() if k not in days and k not in POLICY_FLAGS},
        numbers=("price_sats", "price_value", "max_machines", "sort_order"),
    )
    _check_shown_price(body, errors)
    if "price_currency" in body and "price_sats" not in body:
        errors.setdefault(
            "price_currency",
            "A shown price needs the policy's own price in sats above; with that empty, the "
            "policy shows the product's price.",
        )
    body["entitlements"] = [p.strip() for p in body.pop("entitlements", "").split(",") if p.strip()]
    body["duration_seconds"] = days["duration_days"] or 0
    body["grace_seconds"] = days["grace_days"] or 0
    if "price_sats" in body:
        body["price_sats_override"] = body.pop("price_sats")
    for flag in POLICY_FLAGS:
        body[flag] = _flag(form, flag)
    body["metadata"] = _json_object(form, errors)
    return body


async def create_policy(service: Licensing, form: Mapping[str, str]) -> dict[str, Any]:
    errors: dict[str, str] = {}
    body = _policy_body(form, errors)
    if not body["entitlements"]:
        del body["entitlements"]
    request = _model(models.PolicyCreate, body, POLICY_FIELDS, errors)
    return plain(await _service(service.catalogue.create_policy(request), POLICY_FIELDS))


async def update_policy(service: Licensing, policy_id: str, form: Mapping[str, str]) -> None:
    """Every field of the edit form is sent: an empty price follows the product's again."""
    errors: dict[str, str] = {}
    body = {"description": "", "price_sats_override": None, **_policy_body(form, errors)}
    body["metadata"] = body["metadata"] or {}
    _sats_alone_unless_shown(body, "price_sats_override")
    for fixed in ("slug", "product_slug"):  # in the licenses' keys: never changed
        body.pop(fixed, None)
    request = _model(models.PolicyUpdate, body, POLICY_FIELDS, errors)
    await _service(
        service.catalogue.update_policy(_id(policy_id, "The policy"), request), POLICY_FIELDS
    )


archive_policy = _setter(lambda s: s.catalogue.set_policy_archived, "The policy", True)
unarchive_policy = _setter(lambda s: s.catalogue.set_policy_archived, "The policy", False)
delete_policy = _one_row(lambda s: s.catalogue.delete_policy, "The policy")


# ----- licenses and machines -----

LICENSE_FIELDS = (
    "product_slug",
    "policy_slug",
    "buyer_email",
    "nostr_npub",
    "note",
    "fingerprint",
    "expires_at",
    "max_machines",
    "grace_days",
    "entitlements",
    "is_trial",
)
# The license form's trial choice: empty follows the policy.
TRIAL_CHOICES = {"yes": True, "no": False}


def _license_query(query: Mapping[str, str], limit: int) -> models.LicenseQuery:
    """The query string's q, status, product and offset, as the API reads them."""
    fields = {name: query[name] for name in ("q", "status", "offset") if query.get(name)}
    if query.get("product"):
        fields["product_id"] = query["product"]
    try:
        return wire.parse(models.LicenseQuery, {**fields, "limit": str(limit)}, from_text=True)
    except BadRequest as e:
        raise Refused(_named_field(e.message, ("status", "q", "offset")), e.message) from None


async def licenses_page(
    service: Licensing, query: Mapping[str, str]
) -> tuple[list[dict[str, Any]], int]:
    """One page of the licenses the query string selects, and how many it selects in all."""
    request = _license_query(query, LICENSE_PAGE)
    found = await _service(service.licenses.list_licenses(request), ("status", "q"))
    return plain(found), await service.licenses.count_licenses(request)


async def issue_license(service: Licensing, form: Mapping[str, str]) -> dict[str, Any]:
    errors: dict[str, str] = {}
    grace = _days(form, "grace_days", errors)
    body = _body({k: v for k, v in form.items() if k != "grace_days"}, numbers=("max_machines",))
    listed = [p.strip() for p in body.pop("entitlements", "").split(",") if p.strip()]
    if listed:
        body["entitlements"] = listed
    if grace is not None:
        body["grace_seconds"] = grace
    trial = body.pop("is_trial", None)
    if trial in TRIAL_CHOICES:
        body["is_trial"] = TRIAL_CHOICES[trial]
    elif trial is not None:
        errors["is_trial"] = f"Must be yes, no or empty (the policy's); got '{trial[:40]}'."
    request = _model(models.LicenseIssue, body, LICENSE_FIELDS, errors)
    return plain(await _service(service.licenses.issue_license(request), LICENSE_FIELDS))


async def license_with_machines(
    service: Licensing, license_id: str
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """The license, its machines and its audit trail."""
    license_id = _id(license_id, "The license")
    found = await _service(service.licenses.get_license(license_id))
    machines = await service.licenses.list_machines(
        models.MachineQuery(license_id=license_id, include_inactive=True, limit=MAX_MACHINES)
    )
    trail = await service.licenses.audit_entries(
        models.AuditQuery(subject=f"license:{license_id}", limit=AUDIT_PAGE)
    )
    return plain(found), plain(machines), plain(trail)


async def revoke(service: Licensing, license_id: str, form: Mapping[str, str]) -> None:
    reason = _model(models.ReasonRequest, _body(form), ("reason",)).reason
    await _service(service.licenses.revoke(_id(license_id, "The license"), reason), ("reason",))


async def suspend(service: Licensing, license_id: str, form: Mapping[str, str]) -> None:
    reason = _model(models.ReasonRequest, _body(form), ("reason",)).reason
    await _service(service.licenses.suspend(_id(license_id, "The license"), reason), ("reason",))


async def unsuspend(service: Licensing, license_id: str, form: Mapping[str, str]) -> None:
    await _service(service.licenses.unsuspend(_id(license_id, "The license")))


TIER_FIELDS = ("to_policy_slug", "reason")


async def change_tier(service: Licensing, license_id: str, form: Mapping[str, str]) -> None:
    """Move the license to another policy of its product as a comp: with no payment provider,
    that is the only change the API makes (`skip_payment` true)."""
    body = {**_body(form), "skip_payment": True}
    request = _model(models.TierChange, body, TIER_FIELDS)
    await _service(service.tiers.change_tier(_id(license_id, "The license"), request), TIER_FIELDS)


MACHINE_STATES = ("active", "deactivated")


async def machines_page(
    service: Licensing, query: Mapping[str, str]
) -> tuple[list[dict[str, Any]], int]:
    """One page of the machines of every license, last seen first, filtered by the query's
    product (an id) and state (active or deactivated; empty: both), and how many it selects."""
    state = query.get("state", "")
    if state not in ("", *MACHINE_STATES):
        raise Refused(
            None,
            f"There is no machine state '{state[:40]}': choose active, deactivated, or "
            "neither for both. Nothing was changed.",
        )
    fields = {name: query[name] for name in ("offset",) if query.get(name)}
    if query.get("product"):
        fields["product_id"] = query["product"]
    fields |= {
        "include_inactive": str(state != "active").lower(),
        "only_inactive": str(state == "deactivated").lower(),
        "limit": str(MACHINE_PAGE),
    }
    try:
        request = wire.parse(models.MachineQuery, fields, from_text=True)
    except BadRequest as e:
        raise Refused(None, e.message) from None
    found = await _service(service.licenses.list_machines(request))
    return plain(found), await service.licenses.count_machines(request)


async def machine(service: Licensing, machine_id: str) -> dict[str, Any] | None:
    """The machine among the newest listed (the API has no lookup by id), or None."""
    listed = await service.licenses.list_machines(
        models.MachineQuery(include_inactive=True, limit=MAX_MACHINES)
    )
    return next((m for m in plain(listed) if m["id"] == machine_id), None)


async def deactivate_machine(service: Licensing, machine_id: str, form: Mapping[str, str]) -> str:
    """Deactivate one machine; returns the license it belonged to."""
    reason = _model(models.ReasonRequest, _body(form), ("reason",)).reason
    done = await _service(
        service.licenses.admin_deactivate_machine(_id(machine_id, "The machine"), reason),
        ("reason",),
    )
    return done.machine.license_id


# ----- revenue -----


async def revenue(service: Licensing) -> dict[str, Any]:
    return plain(await service.licenses.revenue_summary())


# ----- discount codes -----

CODE_FIELDS = (
    "code",
    "kind",
    "amount",
    "product_slug",
    "max_redemptions",
    "expires_at",
    "description",
    "referrer_label",
    "policy_slugs",
)


async def codes(service: Licensing) -> list[dict[str, Any]]:
    return plain(await service.codes.list_codes(models.CodeQuery(include_inactive=True)))


# One checkbox per policy a code can be limited to, named `policy-<id>` (a form field holds
# one value, and a slug is only unique within its product).
POLICY_FIELD = "policy-"


async def code(service: Licensing, code_id: str) -> dict[str, Any]:
    """The code, with the ids of the policies it is limited to (`policy_ids`) and the
    policies of its product it could be limited to (`product_policies`)."""
    found = plain((await _service(service.codes.get_code(_id(code_id, "The discount code")))).code)
    one = [found["applies_to_policy_id"]] if found["applies_to_policy_id"] else []
    found["policy_ids"] = found["applies_to_policy_ids"] or one
    product_id = found["applies_to_product_id"]
    listed = await policies(service) if product_id else []
    found["product_policies"] = [p for p in listed if p["product_id"] == product_id]
    return found


def _checked_policies(
    form: Mapping[str, str],
    offered: list[dict[str, Any]],
    product_id: str | None,
    errors: dict[str, str],
) -> list[str]:
    """The slugs of the policies checked on the form, which must all be of the code's product;
    a refusal goes into `errors` next to the checkboxes."""
    checked = {name.removeprefix(POLICY_FIELD) for name in form if name.startswith(POLICY_FIELD)}
    chosen = [p for p in offered if p["id"] in checked]
    products = {p["product_id"] for p in chosen}
    if len(chosen) < len(checked):
        errors["policy_slugs"] = (
            "A policy you checked no longer exists (deleted meanwhile): check the list again."
        )
    elif chosen and product_id is None:
        errors["policy_slugs"] = (
            "Choose the product these policies are of under 'Only for product', or uncheck "
            "them: a code is limited to policies of its own product."
        )
    elif products - {product_id}:
        other = next(p for p in chosen if p["product_id"] != product_id)
        errors["policy_slugs"] = (
            f"Policy '{other['slug']}' is of another product than the one chosen: a code is "
            "limited to policies of its own product. Uncheck it or choose its product."
        )
    return [p["slug"] for p in chosen]


def _code_body(form: Mapping[str, str], kind: str, errors: dict[str, str]) -> dict[str, Any]:
    """The code form as the API's body: a percent (12.5) as basis points (1250)."""
    body = _body(
        {k: v for k, v in form.items() if not k.startswith(POLICY_FIELD)},
        numbers=("amount", "max_redemptions"),
    )
    if "max_redemptions" in body:
        body["max_uses"] = body.pop("max_redemptions")
    if kind == "percent" and form.get("amount", "").strip():
        body["amount"] = _percent(form["amount"], errors)
        if body["amount"] is None:
            del body["amount"]
    return body


async def create_code(service: Licensing, form: Mapping[str, str]) -> dict[str, Any]:
    errors: dict[str, str] = {}
    body = _code_body(form, form.get("kind", ""), errors)
    product_ids = {p["slug"]: p["id"] for p in await products(service)}
    product_id = product_ids.get(body.get("product_slug", ""))
    listed = _checked_policies(form, await policies(service), product_id, errors)
    if listed:
        body["policy_slugs"] = listed
    request = _model(models.CodeCreate, body, (*CODE_FIELDS, "max_uses"), errors)
    return plain(await _service(service.codes.create_code(request), CODE_FIELDS))


async def update_code(service: Licensing, code_id: str, form: Mapping[str, str]) -> None:
    """Every field of the edit form is sent: an empty limit, expiry or label is lifted."""
    found = await code(service, code_id)
    errors: dict[str, str] = {}
    cleared = {"max_uses": None, "expires_at": None, "referrer_label": None, "description": ""}
    body = {**cleared, **_code_body(form, found["kind"], errors)}
    for fixed in ("code", "kind", "product_slug", "policy_slug"):
        body.pop(fixed, None)
    product_id = found["applies_to_product_id"]
    if product_id:  # every box unchecked lifts the limit
        offered = found["product_policies"]
        body["policy_slugs"] = _checked_policies(form, offered, product_id, errors)
    request = _model(models.CodeUpdate, body, (*CODE_FIELDS, "max_uses"), errors)
    await _service(service.codes.update_code(found["id"], request), CODE_FIELDS)


enable_code = _setter(lambda s: s.codes.set_code_active, "The discount code", True)
disable_code = _setter(lambda s: s.codes.set_code_active, "The discount code", False)
delete_code = _one_row(lambda s: s.codes.delete_code, "The discount code")


# ----- webhooks -----

WEBHOOK_FIELDS = ("url", "event_types", "description")
# One checkbox per known event, named `event-<type>` (a form field holds one value).
EVENT_FIELD = "event-"


async def webhook_endpoints(service: Licensing) -> list[dict[str, Any]]:
    return plain(await service.outbox.list_webhook_endpoints())


async def deliveries_page(
    service: Licensing, query: Mapping[str, str]
) -> tuple[list[dict[str, Any]], int]:
    """One page of the deliveries, newest event first, from the query string's offset, and how
    many there are."""
    fields = {"offset": query["offset"]} if query.get("offset") else {}
    try:
        request = wire.parse(
            integrations.DeliveryQuery, {**fields, "limit": str(DELIVERY_PAGE)}, from_text=True
        )
    except BadRequest as e:
        raise Refused(None, e.message) from None
    found = plain(await service.outbox.list_deliveries(request))
    return found, await service.outbox.count_deliveries(request)


async def create_webhook_endpoint(service: Licensing, form: Mapping[str, str]) -> dict[str, Any]:
    """The endpoint as created: its secret in full, this once."""
    body = _body({k: v for k, v in form.items() if not k.startswith(EVENT_FIELD)})
    body["event_types"] = [e for e in EVENT_TYPES if _flag(form, f"{EVENT_FIELD}{e}")]
    request = _model(integrations.WebhookEndpointCreate, body, WEBHOOK_FIELDS)
    return plain(await _service(service.outbox.create_webhook_endpoint(request), WEBHOOK_FIELDS))


enable_webhook_endpoint = _setter(
    lambda s: s.outbox.set_webhook_active, "The webhook endpoint", True
)
disable_webhook_endpoint = _setter(
    lambda s: s.outbox.set_webhook_active, "The webhook endpoint", False
)
delete_webhook_endpoint = _one_row(
    lambda s: s.outbox.delete_webhook_endpoint, "The webhook endpoint"
)
retry_delivery = _one_row(lambda s: s.outbox.retry_delivery, "The delivery")


# ----- API keys -----

API_KEY_FIELDS = ("label", "role", "scopes")
SCOPES = access.SCOPES
_SCOPE_SHAPE = re.compile(get_args(integrations.ScopeText)[1].pattern)
# What each role may change besides reading everything (Keysat's grants), for the form's hint.
ROLE_WRITES: dict[str, list[str]] = {
    role: sorted(s for s in scopes if s.endswith(":write"))
    for role, scopes in access.ROLE_SCOPES.items()
}


async def api_keys(service: Licensing) -> list[dict[str, Any]]:
    return plain(await service.access.list_api_keys())


async def create_api_key(service: Licensing, form: Mapping[str, str]) -> dict[str, Any]:
    """The key as created: its token in full, this once."""
    body, errors = _body(form), {}
    listed = [s.strip() for s in body.pop("scopes", "").split(",") if s.strip()]
    unshaped = [s for s in listed if not _SCOPE_SHAPE.match(s)]
    if unshaped:  # the model's message would be its pattern
        errors["scopes"] = (
            f"'{unshaped[0][:40]}' is not a scope: a scope is a resource, a colon and read or "
            f"write, comma-separated, from: {', '.join(SCOPES)}."
        )
    elif listed:
        body["scopes"] = listed
    request = _model(integrations.ApiKeyCreate, body, API_KEY_FIELDS, errors)
    return plain(await _service(service.access.create_api_key(request), API_KEY_FIELDS))


revoke_api_key = _one_row(lambda s: s.access.revoke_api_key, "The API key")


# ----- audit -----


AUDIT_FILTERS = ("action", "actor", "offset")
# Who can act, as the audit log names them (an API key: `api_key:<id>`).
ACTOR_KINDS = {
    "console": "the console",
    "master_key": "the master admin key",
    "api_key": "any API key",
    "action": "a StartOS action",
    "admin": "admin (before actors were recorded)",
    "public": "a buyer (public routes)",
    "system": "Keysmith itself",
}


def audit_actors(keys: list[dict[str, Any]]) -> dict[str, str]:
    """The actor filter's choices: each kind, then each API key by its label."""
    named = {f"api_key:{k['id']}": f"API key '{k['label']}' ({k['role']})" for k in keys}
    return {**ACTOR_KINDS, **named}


async def audit_page(
    service: Licensing, query: Mapping[str, str]
) -> tuple[list[dict[str, Any]], int]:
    """One page of the audit log for the query string's action, actor and offset, and how many
    entries it selects."""
    fields = {name: query[name] for name in AUDIT_FILTERS if query.get(name)}
    try:
        request = wire.parse(
            models.AuditQuery, {**fields, "limit": str(AUDIT_PAGE)}, from_text=True
        )
    except BadRequest as e:
        raise Refused(_named_field(e.message, AUDIT_FILTERS), e.message) from None
    return plain(await service.licenses.audit_entries(request)), await service.licenses.count_audit(
        request
    )


# Form fields named differently from the API's (the form says days, percent and price), with
# the label the form shows. Days are checked in days before the API sees seconds (`_days`).
FORM_NAME = {
    "max_uses": ("max_redemptions", "Redemptions allowed"),
    "price_sats_override": ("price_sats", "Price (sats)"),
    "duration_seconds": ("duration_days", "Term (days)"),
    "grace_seconds": ("grace_days", "Grace (days)"),
}


# Values one of which a model takes for any field, put in place of a refused one so that the
# fields after it are checked too.
_STAND_INS: tuple[Any, ...] = ("x", 1, 0, [], {}, False)


def _model(
    model: type[T],
    body: dict[str, Any],
    fields: tuple[str, ...],
    errors: dict[str, str] | None = None,
) -> T:
    """The form as the API's own request model: the same refusals, each next to its form field,
    all of them at once (the API answers only the first). `errors` are the form's own (units)."""
    body, errors = dict(body), {} if errors is None else errors
    tried: dict[str, Iterator[Any]] = {}
    while True:
        try:
            parsed = wire.parse(model, body)
        except BadRequest as e:
            named = _NAMED_FIELD.match(e.message)
            field = _named_field(e.message, fields)
            if field is None or named is None:
                if not errors:
                    raise Refused(None, e.message) from None
                break  # about the form as a whole: the fields' messages come first
            errors.setdefault(field, _in_form_words(e.message))
            stand_in = next(tried.setdefault(named[1], iter(_STAND_INS)), None)
            if stand_in is None:
                break
            body[named[1]] = stand_in
            continue
        if not errors:
            return parsed
        break
    first = next(iter(errors))
    raise Refused(first, errors[first], errors=errors)


def _named_field(message: str, fields: tuple[str, ...]) -> str | None:
    named = _NAMED_FIELD.match(message)
    if named is None:
        return None
    name = FORM_NAME.get(named[1], (named[1],))[0]
    return name if name in fields else None


def _in_form_words(message: str) -> str:
    """The API's message about a renamed field, naming it by the form's label instead."""
    named = _NAMED_FIELD.match(message)
    if named is None or named[1] not in FORM_NAME:
        return message
    return f"'{FORM_NAME[named[1]][1]}'{message[named.end() :]}"


def _json_object(form: Mapping[str, str], errors: dict[str, str]) -> dict[str, Any] | None:
    """The metadata field: a JSON object, or None when empty (or refused into `errors`)."""
    text = form.get("metadata", "").strip()
    if text == "":
        return None
    try:
        value = json.loads(text)
    except ValueError as e:
        errors["metadata"] = f'Must be a JSON object, like {{"tier": "pro"}}: {e}.'
        return None
    if not isinstance(value, dict):
        errors["metadata"] = 'Must be a JSON object, like {"tier": "pro"}, not a list or a value.'
        return None
    return value


def _days(form: Mapping[str, str], name: str, errors: dict[str, str]) -> int | None:
    """A whole number of days as seconds, or None when empty (or refused into `errors`)."""
    text = form.get(name, "").strip()
    if text == "":
        return None
    if not re.fullmatch(r"[0-9]{1,6}", text) or int(text) > MAX_DAYS:
        errors[name] = f"Must be a whole number of days from 0 to {MAX_DAYS}; got '{text[:40]}'."
        return None
    return int(text) * SECONDS_PER_DAY


def _percent(text: str, errors: dict[str, str]) -> int | None:
    """A percent with up to two decimals (12.5) as basis points (1250), Keysat's unit."""
    text = text.strip().replace(",", ".")
    found = re.fullmatch(r"([0-9]{1,3})(?:\.([0-9]{1,2}))?", text)
    points = int(found[1]) * 100 + int((found[2] or "0").ljust(2, "0")) if found else 0
    if not 0 < points <= 100 * BASIS_POINTS_PER_PERCENT:
        errors["amount"] = (
            f"A percent must be from 0.01 to 100, with at most two decimals (12.5 for "
            f"12.5 %); got '{text[:40]}'."
        )
        return None
    return points
