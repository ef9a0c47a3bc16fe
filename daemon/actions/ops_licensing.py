"""The seller's daily work as actions: products, policies, licenses, machines, discount codes,
and the audit log. Each one checks its form (registry), then the same field rules the HTTP
admin API applies (`daemon.licensing.inputs`), then calls the same `Licensing` method."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any, TypeVar

from daemon.actions import service_call
from daemon.actions.registry import NOTHING_CHANGED, ActionError
from daemon.actions.results import Result, Value
from daemon.licensing import models, wire
from daemon.licensing.codes import BASIS_POINTS_PER_PERCENT, strong_code
from daemon.licensing.errors import LicensingError
from daemon.settings import Settings

T = TypeVar("T")
SECONDS_PER_DAY = 86_400
# The action forms' names for the model fields they fill under another name.
_FORM_NAMES = {
    "product_slug": "product",
    "policy_slug": "policy",
    "max_uses": "max_redemptions",
    "price_sats_override": "price_sats",
    "duration_seconds": "duration_days",
}
_NAMED = re.compile(r"^'([a-z_]+)'")


def _request(model: type[T], fields: dict[str, Any]) -> T:
    """The action's values as the admin API's own request model (absent ones left out): the
    same rules and words as the API, naming the action's own field where its name differs."""
    given = {name: value for name, value in fields.items() if value is not None}
    try:
        return wire.parse(model, given)
    except LicensingError as error:
        message = _NAMED.sub(lambda m: f"'{_FORM_NAMES.get(m[1], m[1])}'", error.message, 1)
        raise ActionError(f"{message}. {NOTHING_CHANGED}") from None


def _uuid(values: dict[str, Any], name: str) -> str:
    try:
        return str(uuid.UUID(values[name]))
    except ValueError:
        raise ActionError(
            f"'{name}' must be an id like 3f2a0c1e-9b7d-4c1a-8e2f-0a1b2c3d4e5f, got "
            f"{values[name][:40]!r}. {NOTHING_CHANGED}"
        ) from None


# ---- products and policies ----------------------------------------------------------------


def create_product(settings: Settings, values: dict[str, Any]) -> Result:
    fields = {
        "slug": values["slug"],
        "name": values["name"],
        "description": values["description"],
        "price_sats": values["price_sats"],
    }
    request = _request(models.ProductCreate, fields)
    product = service_call.call(settings, lambda s: s.catalogue.create_product(request))
    return Result(
        "Product created",
        f"Created the product '{product['name']}' ({product['slug']}) at "
        f"{product['price_sats']} sats. Issue licenses for it with its slug.",
        Value(product["id"], name="Product id", copyable=True),
    )


def create_policy(settings: Settings, values: dict[str, Any]) -> Result:
    entitlements = None
    if values["entitlements"]:
        listed = [part.strip() for part in values["entitlements"].split(",") if part.strip()]
        entitlements = listed
    days = values["duration_days"]
    fields = {
        "product_slug": values["product"],
        "slug": values["slug"],
        "name": values["name"],
        "price_sats_override": values["price_sats"],
        "duration_seconds": None if days is None else days * SECONDS_PER_DAY,
        "max_machines": values["max_machines"],
        "is_trial": values["is_trial"],
        "is_default": values["is_default"],
        "public": values["is_public"],
        "entitlements": entitlements,
    }
    request = _request(models.PolicyCreate, fields)
    policy = service_call.call(settings, lambda s: s.catalogue.create_policy(request))
    duration = f"{policy['duration_days']} days" if policy["duration_days"] else "no expiry"
    return Result(
        "Policy created",
        f"Created the policy '{policy['name']}' ({policy['slug']}) of '{values['product']}': "
        f"{duration}, up to {policy['max_machines']} machine(s)"
        + (", the product's default" if policy["is_default"] else "")
        + ".",
        Value(policy["id"], name="Policy id", copyable=True),
    )


# ---- licenses -----------------------------------------------------------------------------


def issue_license(settings: Settings, values: dict[str, Any]) -> Result:
    product = values["product"]
    fields = {
        "product_slug": product,
        "policy_slug": values["policy"],
        "note": values["note"],
        "fingerprint": values["fingerprint"],
        "expires_at": values["expires_at"],
    }
    request = _request(models.LicenseIssue, fields)
    issued = service_call.call(settings, lambda s: s.licenses.issue_license(request))
    expiry = issued["expires_at"] or "never"
    return Result(
        "License issued",
        f"Issued license {issued['license_id']} for '{product}' (expires: {expiry}). Copy the "
        "key and send it to your customer.",
        Value(issued["license_key"], name="License key", copyable=True),
    )


def revoke_license(settings: Settings, values: dict[str, Any]) -> Result:
    license_id = _uuid(values, "license_id")
    done = service_call.call(settings, lambda s: s.licenses.revoke(license_id, values["reason"]))
    return _status_result("License revoked", done, "it no longer validates anywhere")


def suspend_license(settings: Settings, values: dict[str, Any]) -> Result:
    license_id = _uuid(values, "license_id")
    done = service_call.call(settings, lambda s: s.licenses.suspend(license_id))
    return _status_result("License suspended", done, "unsuspend it to let it validate again")


def unsuspend_license(settings: Settings, values: dict[str, Any]) -> Result:
    license_id = _uuid(values, "license_id")
    done = service_call.call(settings, lambda s: s.licenses.unsuspend(license_id))
    return _status_result("License unsuspended", done, "it validates again")


def _status_result(title: str, done: dict[str, Any], consequence: str) -> Result:
    license = done["license"]
    return Result(
        title,
        f"License {license['id']} of '{license['product_slug']}' is now {license['status']}: "
        f"{consequence}.",
    )


def search_licenses(settings: Settings, values: dict[str, Any]) -> Result:
    status = None if values["status"] == "any" else values["status"]
    found = service_call.call(
        settings,
        lambda s: s.licenses.list_licenses(
            models.LicenseQuery(status=status, q=values["query"] or None, limit=values["limit"])
        ),
    )
    if not found:
        return Result("Licenses", "No license matches.")
    members = tuple(
        Value(
            lic["license_key"],
            name=f"{lic['id']} · {lic['product_slug']} · {lic['status']}",
            description=f"issued {lic['issued_at']}, expires {lic['expires_at'] or 'never'}"
            + (f"; note: {lic['note']}" if lic["note"] else ""),
            copyable=True,
        )
        for lic in found
    )
    return Result("Licenses", f"{len(found)} license(s), newest first.", members)


# ---- machines -----------------------------------------------------------------------------


def list_machines(settings: Settings, values: dict[str, Any]) -> Result:
    license_id = _uuid(values, "license_id")

    async def read(service: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        found = await service.licenses.get_license(license_id)  # an unknown id is refused by name
        query = models.MachineQuery(
            license_id=license_id, include_inactive=values["include_inactive"], limit=500
        )
        return found, await service.licenses.list_machines(query)

    license, machines = service_call.call(settings, read)
    seats = f"{license['max_machines']} seat(s)"
    if not machines:
        return Result("Machines", f"License {license_id} ({seats}) has no machine activated.")
    members = tuple(
        Value(
            machine["id"],
            name=f"{machine['hostname'] or 'unnamed'} ({machine['platform'] or 'unknown'})"
            + ("" if machine["active"] else " · deactivated"),
            description=f"first seen {machine['first_seen_at']}, last seen "
            f"{machine['last_seen_at']}",
            copyable=True,
        )
        for machine in machines
    )
    return Result(
        "Machines",
        f"{len(machines)} machine(s) on license {license_id} ({seats}). Copy a machine id to "
        "deactivate it.",
        members,
    )


def deactivate_machine(settings: Settings, values: dict[str, Any]) -> Result:
    machine_id = _uuid(values, "machine_id")
    machine = service_call.call(
        settings, lambda s: s.licenses.admin_deactivate_machine(machine_id, values["reason"])
    )["machine"]
    return Result(
        "Machine deactivated",
        f"Machine {machine['id']} is deactivated; its seat on license {machine['license_id']} is "
        "free for another machine.",
    )


# ---- discount codes -----------------------------------------------------------------------


def create_discount_code(settings: Settings, values: dict[str, Any]) -> Result:
    fields = {
        "code": values["code"] or strong_code(),
        "kind": values["kind"],
        "amount": values["amount"],
        "product_slug": values["product"],
        "policy_slug": values["policy"],
        "max_uses": values["max_redemptions"],
        "expires_at": values["expires_at"],
        "description": values["note"],
    }
    if fields["kind"] == "percent" and fields["amount"] is not None:
        # The form asks for a whole percent; the model counts basis points, as Keysat.
        fields["amount"] *= BASIS_POINTS_PER_PERCENT
    request = _request(models.CodeCreate, fields)
    created = service_call.call(settings, lambda s: s.codes.create_code(request))
    scope = f"for '{created['product_slug']}'" if created["product_slug"] else "for every product"
    warning = f" Warning: {created['weak']}" if "weak" in created else ""
    return Result(
        "Discount code created",
        f"Created the {created['kind']} code {created['code']} {scope} (id {created['id']})."
        + warning,
        Value(created["code"], name="Code", copyable=True),
    )


def disable_discount_code(settings: Settings, values: dict[str, Any]) -> Result:
    wanted = values["code"]

    async def disable(service: Any) -> dict[str, Any]:
        # Operators know the code they handed out, not its id; codes are few.
        for code in await service.codes.list_codes(models.CodeQuery(include_inactive=True)):
            if wanted in (code.code, code.id):
                return await service.codes.set_code_active(code.id, False)
        raise ActionError(f"There is no discount code '{wanted}'. {NOTHING_CHANGED}")

    disabled = service_call.call(settings, disable)
    return Result(
        "Discount code disabled",
        f"The code {disabled['code']} can no longer be redeemed ({disabled['used_count']} "
        "redemption(s) so far are kept).",
    )


# ---- audit --------------------------------------------------------------------------------


def audit_log(settings: Settings, values: dict[str, Any]) -> Result:
    entries = service_call.call(
        settings,
        lambda s: s.licenses.audit_entries(
            models.AuditQuery(
                action=values["action"] or None,
                subject=values["subject"] or None,
                limit=values["limit"],
            )
        ),
    )
    if not entries:
        return Result("Audit log", "No audit entry matches.")
    members = tuple(
        Value(
            json.dumps(entry["detail"], sort_keys=True),
            name=f"{entry['created_at']} · {entry['action']} · {entry['subject']}",
            description=f"by {entry['actor']}",
        )
        for entry in entries
    )
    return Result("Audit log", f"The {len(entries)} newest matching entries.", members)
