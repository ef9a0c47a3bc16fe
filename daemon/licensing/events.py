"""The webhook events and their payloads, declared once: `outbox.emit` encodes them, the
OpenAPI document describes them (its `webhooks` section), the README lists them.

Every delivery's body is Keysat's envelope, `{"event_type", "timestamp" (RFC 3339 UTC),
"data"}`; `data` is the Struct of its type below, with Keysat's fields under Keysat's names
(its `dispatch` calls in admin.rs, machines.rs, validate.rs and webhook.rs) and, where Keysat
has no field saying it, a few of Keysmith's. The time is the change's, fixed when the event is
written, so a receiver can refuse a replay older than it accepts.
"""

from __future__ import annotations

from typing import Literal, get_args

import msgspec

from daemon.licensing.answers import Product
from daemon.licensing.integrations import EventType

# Keysat's `source` of `license.issued`: its admin route (and here an action or the console
# too), or a purchase (a free-license redemption is a purchase of 0 sats, as in Keysat).
IssueSource = Literal["admin_issue", "purchase"]
# The `reason` Keysat records (and sends) when the admin gives none.
REVOKE_REASON = "admin revoke"
SUSPEND_REASON = "admin suspend"


class Payload(msgspec.Struct, kw_only=True):
    pass


class LicenseIssued(Payload, kw_only=True):
    """`license.issued`: by the admin API, an action or the console (`admin_issue`), or a free
    purchase or a redemption (`purchase`, with its `invoice_id`). Keysmith adds the license
    key, so a shop can send it to the buyer (prefer an https endpoint), and the buyer's email."""

    license_id: str
    product_id: str
    invoice_id: str | None
    policy_id: str | None
    is_trial: bool
    expires_at: str | None
    entitlements: list[str]
    source: IssueSource
    license_key: str
    buyer_email: str | None


class LicenseStatusChanged(Payload, kw_only=True):
    """`license.unsuspended` (Keysat sends `license_id`; Keysmith adds the product and the
    status before and after)."""

    license_id: str
    product_id: str
    previous_status: str
    status: str


class LicenseStopped(LicenseStatusChanged, kw_only=True):
    """`license.revoked`, `license.suspended`: with the reason recorded (Keysat's default when
    the admin gave none: `admin revoke`, `admin suspend`)."""

    reason: str


class MachineActivated(Payload, kw_only=True):
    """`machine.activated`: a seat taken by a new machine or by a deactivated one coming back
    (a heartbeat or re-activation of an active machine is not an event). `fingerprint_hash`
    is the hex SHA-256 of the machine's fingerprint, as in Keysat; Keysmith adds the hostname
    and platform the client gave."""

    license_id: str
    machine_id: str
    fingerprint_hash: str
    hostname: str | None
    platform: str | None


class MachineDeactivated(Payload, kw_only=True):
    """`machine.deactivated`: by the client (`client_requested` unless it gives a reason), by
    the admin (`admin deactivate` unless given), or by an action."""

    license_id: str
    machine_id: str
    reason: str


class SelfHealed(Payload, kw_only=True):
    """`migration.self_healed` (Keysmith's own): one entry of the migrator's heal log,
    announced once, at the boot that finds it (so also heals of a boot that crashed before
    announcing them)."""

    healed_at: str
    version: int
    action: str
    evidence: str
    backup_file: str | None
    daemon_version: str | None


class ProductCreated(Payload, kw_only=True):
    """`product.created`: Keysat's `{product}`, the product as the admin API answers it."""

    product: Product


class CodeRedeemed(Payload, kw_only=True):
    """`code.redeemed`: a discount code used by a purchase it made free or by a redemption
    (Keysmith settles only those), Keysat's fields: the whole price was the discount."""

    redemption_id: str
    code_id: str
    code: str
    license_id: str
    product_id: str
    invoice_id: str
    discount_applied_sats: int
    base_price_sats: int
    final_price_sats: int


PAYLOAD_OF: dict[str, type[Payload]] = {
    "license.issued": LicenseIssued,
    "license.revoked": LicenseStopped,
    "license.suspended": LicenseStopped,
    "license.unsuspended": LicenseStatusChanged,
    "machine.activated": MachineActivated,
    "machine.deactivated": MachineDeactivated,
    "migration.self_healed": SelfHealed,
    "product.created": ProductCreated,
    "code.redeemed": CodeRedeemed,
}
assert set(PAYLOAD_OF) == set(get_args(EventType)), "every event type has its payload"


class Event(msgspec.Struct, kw_only=True):
    """The body of every delivery: Keysat's envelope."""

    event_type: EventType
    timestamp: str
    data: Payload
