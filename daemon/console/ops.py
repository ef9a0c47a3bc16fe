"""The console's one door into the licensing layer: every call it makes to `Licensing`.

When the service's method names or shapes change, this module changes and no page does.
Form fields go through the admin API's own request models (`daemon.licensing.models`, with the
API's names and limits), so a value the API refuses is refused here with the same message, and the
service raises the same errors for what only it can check. A refusal is a `Refused` naming the
form field it is about (None for the form as a whole); nothing was written.
"""

from __future__ import annotations

import re
import sqlite3
import uuid
from collections.abc import Mapping
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
MAX_MACHINES = 5000
AUDIT_PAGE = 100
DELIVERY_PAGE = 50
_INTEGER = re.compile(r"^-?[0-9]{1,20}$")
_NAMED_FIELD = re.compile(r"^'([a-z_]+)'")
SECONDS_PER_DAY = 86_400
T = TypeVar("T")

STATUSES = LICENSE_STATUSES
KINDS = DISCOUNT_KINDS
# Every event (`*`, also those of a later version) first, then each one.
EVENT_TYPES: tuple[str, ...] = (integrations.EVERY_EVENT, *get_args(integrations.EventType))
ROLES: tuple[str, ...] = get_args(integrations.Role)


class Refused(Exception):
    """`status` is the one the API answers for the same refusal."""

    def __init__(self, field: str | None, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.status = status


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
        field = named[1] if named and named[1] in fields else None
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


# ----- products and policies -----

PRODUCT_FIELDS = ("slug", "name", "description", "price_sats", "entitlements_catalog")


async def products(service: Licensing) -> list[dict[str, Any]]:
    return plain(await service.admin_products())


async def create_product(service: Licensing, form: Mapping[str, str]) -> dict[str, Any]:
    body = _body(form, numbers=("price_sats",))
    catalog = _catalog_lines(body.pop("entitlements_catalog", ""))
    if catalog:
        body["entitlements_catalog"] = catalog
    request = _model(models.ProductCreate, body, PRODUCT_FIELDS)
    return plain(await _service(service.create_product(request), PRODUCT_FIELDS))


def _catalog_lines(text: str) -> list[dict[str, str]] | None:
    """'slug: Name' per line, as the API's [{slug, name}] list."""
    entries = []
    for line in text.splitlines():
        if line.strip():
            slug, _, name = line.partition(":")
            entries.append({"slug": slug.strip(), "name": name.strip()})
    return entries or None


POLICY_FIELDS = ("product_slug", "slug", "name", "price_sats", "duration_days", "max_machines")
# The console's form says days and price; the API (Keysat) says seconds and an override.
_POLICY_FORM_TO_API = {"price_sats": "price_sats_override", "duration_days": "duration_seconds"}


async def policies(service: Licensing) -> list[dict[str, Any]]:
    return plain(await service.admin_policies(models.PolicyQuery(include_archived=True)))


async def create_policy(service: Licensing, form: Mapping[str, str]) -> dict[str, Any]:
    body = _body(form, numbers=("price_sats", "duration_days", "max_machines"))
    listed = [p.strip() for p in body.pop("entitlements", "").split(",") if p.strip()]
    if listed:
        body["entitlements"] = listed
    if isinstance(body.get("duration_days"), int):
        body["duration_days"] *= SECONDS_PER_DAY
    body = {_POLICY_FORM_TO_API.get(name, name): value for name, value in body.items()}
    for flag in ("is_trial", "is_default", "public"):
        body[flag] = _flag(form, flag)
    request = _model(models.PolicyCreate, body, (*POLICY_FIELDS, "entitlements"))
    return plain(await _service(service.create_policy(request), (*POLICY_FIELDS, "entitlements")))


# ----- licenses and machines -----

LICENSE_FIELDS = ("product_slug", "policy_slug", "note", "fingerprint", "expires_at")


async def licenses(service: Licensing, query: Mapping[str, str]) -> list[dict[str, Any]]:
    """One page of licenses for the query string's q, status and offset, as the API reads them."""
    fields = {name: query[name] for name in ("q", "status", "offset") if query.get(name)}
    try:
        request = wire.parse(
            models.LicenseQuery, {**fields, "limit": str(LICENSE_PAGE)}, from_text=True
        )
    except BadRequest as e:
        raise Refused(_named_field(e.message, ("status", "q", "offset")), e.message) from None
    return plain(await _service(service.list_licenses(request), ("status", "q")))


async def issue_license(service: Licensing, form: Mapping[str, str]) -> dict[str, Any]:
    request = _model(models.LicenseIssue, _body(form), LICENSE_FIELDS)
    return plain(await _service(service.issue_license(request), LICENSE_FIELDS))


async def license_with_machines(
    service: Licensing, license_id: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    license_id = _id(license_id, "The license")
    found = await _service(service.get_license(license_id))
    machines = await service.list_machines(
        models.MachineQuery(license_id=license_id, include_inactive=True, limit=MAX_MACHINES)
    )
    return plain(found), plain(machines)


async def revoke(service: Licensing, license_id: str, form: Mapping[str, str]) -> None:
    reason = _model(models.ReasonRequest, _body(form), ("reason",)).reason
    await _service(service.revoke(_id(license_id, "The license"), reason), ("reason",))


async def suspend(service: Licensing, license_id: str, form: Mapping[str, str]) -> None:
    reason = _model(models.ReasonRequest, _body(form), ("reason",)).reason
    await _service(service.suspend(_id(license_id, "The license"), reason), ("reason",))


async def unsuspend(service: Licensing, license_id: str, form: Mapping[str, str]) -> None:
    await _service(service.unsuspend(_id(license_id, "The license")))


async def deactivate_machine(service: Licensing, machine_id: str, form: Mapping[str, str]) -> str:
    """Deactivate one machine; returns the license it belonged to."""
    reason = _model(models.ReasonRequest, _body(form), ("reason",)).reason
    done = await _service(
        service.admin_deactivate_machine(_id(machine_id, "The machine"), reason), ("reason",)
    )
    return done.machine.license_id


# ----- discount codes -----

CODE_FIELDS = (
    "code",
    "kind",
    "amount",
    "product_slug",
    "policy_slug",
    "max_redemptions",
    "expires_at",
    "description",
)


async def codes(service: Licensing) -> list[dict[str, Any]]:
    return plain(await service.list_codes(models.CodeQuery(include_inactive=True)))


async def create_code(service: Licensing, form: Mapping[str, str]) -> dict[str, Any]:
    body = _body(form, numbers=("amount", "max_redemptions"))
    if "max_redemptions" in body:
        body["max_uses"] = body.pop("max_redemptions")
    # The form asks for a whole percent; the API (Keysat) counts basis points.
    if body.get("kind") == "percent" and isinstance(body.get("amount"), int):
        body["amount"] *= BASIS_POINTS_PER_PERCENT
    request = _model(models.CodeCreate, body, (*CODE_FIELDS, "max_uses"))
    return plain(await _service(service.create_code(request), CODE_FIELDS))


async def disable_code(service: Licensing, code_id: str) -> None:
    await _service(service.set_code_active(_id(code_id, "The discount code"), False))


# ----- webhooks -----

WEBHOOK_FIELDS = ("url", "event_types", "description")
# One checkbox per known event, named `event-<type>` (a form field holds one value).
EVENT_FIELD = "event-"


async def webhook_endpoints(service: Licensing) -> list[dict[str, Any]]:
    return plain(await service.list_webhook_endpoints())


async def deliveries(service: Licensing) -> list[dict[str, Any]]:
    return plain(await service.list_deliveries(integrations.DeliveryQuery(limit=DELIVERY_PAGE)))


async def create_webhook_endpoint(service: Licensing, form: Mapping[str, str]) -> dict[str, Any]:
    """The endpoint as created: its secret in full, this once."""
    body = _body({k: v for k, v in form.items() if not k.startswith(EVENT_FIELD)})
    body["event_types"] = [e for e in EVENT_TYPES if _flag(form, f"{EVENT_FIELD}{e}")]
    request = _model(integrations.WebhookEndpointCreate, body, WEBHOOK_FIELDS)
    return plain(await _service(service.create_webhook_endpoint(request), WEBHOOK_FIELDS))


async def enable_webhook_endpoint(service: Licensing, endpoint_id: str) -> None:
    await _service(service.set_webhook_active(_id(endpoint_id, "The webhook endpoint"), True))


async def disable_webhook_endpoint(service: Licensing, endpoint_id: str) -> None:
    await _service(service.set_webhook_active(_id(endpoint_id, "The webhook endpoint"), False))


async def delete_webhook_endpoint(service: Licensing, endpoint_id: str) -> None:
    await _service(service.delete_webhook_endpoint(_id(endpoint_id, "The webhook endpoint")))


async def retry_delivery(service: Licensing, delivery_id: str) -> None:
    await _service(service.retry_delivery(_id(delivery_id, "The delivery")))


# ----- API keys -----

API_KEY_FIELDS = ("label", "role", "scopes")
SCOPES = access.SCOPES
# What each role may change besides reading everything (Keysat's grants), for the form's hint.
ROLE_WRITES: dict[str, list[str]] = {
    role: sorted(s for s in scopes if s.endswith(":write"))
    for role, scopes in access.ROLE_SCOPES.items()
}


async def api_keys(service: Licensing) -> list[dict[str, Any]]:
    return plain(await service.list_api_keys())


async def create_api_key(service: Licensing, form: Mapping[str, str]) -> dict[str, Any]:
    """The key as created: its token in full, this once."""
    body = _body(form)
    listed = [s.strip() for s in body.pop("scopes", "").split(",") if s.strip()]
    if listed:
        body["scopes"] = listed
    request = _model(integrations.ApiKeyCreate, body, API_KEY_FIELDS)
    return plain(await _service(service.create_api_key(request), API_KEY_FIELDS))


async def revoke_api_key(service: Licensing, key_id: str) -> None:
    await _service(service.revoke_api_key(_id(key_id, "The API key")))


# ----- audit -----


async def audit(service: Licensing, before_id: int | None) -> list[dict[str, Any]]:
    query = models.AuditQuery(limit=AUDIT_PAGE, before_id=before_id)
    return plain(await service.audit_entries(query))


def _model(model: type[T], body: dict[str, Any], fields: tuple[str, ...]) -> T:
    """The form as the API's own request model: the same refusal, naming the form field."""
    try:
        return wire.parse(model, body)
    except BadRequest as e:
        raise Refused(_named_field(e.message, fields), e.message) from None


def _named_field(message: str, fields: tuple[str, ...]) -> str | None:
    named = _NAMED_FIELD.match(message)
    if named is None:
        return None
    name = {"max_uses": "max_redemptions", "price_sats_override": "price_sats"}.get(
        named[1], named[1]
    )
    name = "duration_days" if name == "duration_seconds" else name
    return name if name in fields else None
