"""The webhook events and their payloads, declared once: `outbox.emit` encodes them, the
OpenAPI document describes them (its `webhooks` section), the README lists them.

Every delivery's body is `{"type", "created_at" (RFC 3339 UTC), "timestamp" (Unix seconds),
"data"}`; `data` is the Struct of its type below. The time is the change's, fixed when the
event is written, so a receiver can refuse a replay older than it accepts.
"""

from __future__ import annotations

from typing import get_args

import msgspec

from daemon.licensing.models import EventType


class Payload(msgspec.Struct, kw_only=True):
    pass


class LicenseIssued(Payload, kw_only=True):
    """`license.issued`: by the admin API, an action, a redemption or a free purchase. Carries
    the license key, so a shop can send it to the buyer: prefer an https endpoint."""

    license_id: str
    product_id: str
    policy_id: str | None
    license_key: str
    buyer_email: str | None
    expires_at: str | None
    entitlements: list[str]
    is_trial: bool


class LicenseStatusChanged(Payload, kw_only=True):
    """`license.revoked`, `license.suspended`, `license.unsuspended`."""

    license_id: str
    product_id: str
    previous_status: str
    status: str
    reason: str | None


class MachineActivated(Payload, kw_only=True):
    """`machine.activated`: a seat taken by a new machine or by a deactivated one coming back
    (a heartbeat or re-activation of an active machine is not an event)."""

    machine_id: str
    license_id: str
    hostname: str | None
    platform: str | None


class MachineDeactivated(Payload, kw_only=True):
    """`machine.deactivated`: by the client, by the admin, or by an action."""

    machine_id: str
    license_id: str
    reason: str


class SelfHealed(Payload, kw_only=True):
    """`migration.self_healed`: one entry of the migrator's heal log, announced once, at the
    boot that finds it (so also heals of a boot that crashed before announcing them)."""

    healed_at: str
    version: int
    action: str
    evidence: str
    backup_file: str | None
    daemon_version: str | None


PAYLOAD_OF: dict[str, type[Payload]] = {
    "license.issued": LicenseIssued,
    "license.revoked": LicenseStatusChanged,
    "license.suspended": LicenseStatusChanged,
    "license.unsuspended": LicenseStatusChanged,
    "machine.activated": MachineActivated,
    "machine.deactivated": MachineDeactivated,
    "migration.self_healed": SelfHealed,
}
assert set(PAYLOAD_OF) == set(get_args(EventType)), "every event type has its payload"


class Event(msgspec.Struct, kw_only=True):
    """The body of every delivery."""

    type: EventType
    created_at: str
    timestamp: int
    data: Payload
