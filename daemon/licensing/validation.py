"""Validation and seats: `validate` (the hot path) and the machine routes.

Validation reads the committed rows on every call (see `daemon.licensing.state`), so a write
by this process, another daemon or a StartOS action is seen by the very next validation.

Fingerprints: clients send a fingerprint string (the published client hashes the machine's
raw identifier first). The server stores and compares only SHA-256 hex of what it received,
and a fingerprint-bound key signs that same hash, so `hash_fingerprint(raw)` in the client
equals the key's `fingerprint_hash` when the client sent `raw`.

Grace (Keysat): after `expires_at`, for the license's `grace_seconds`, validation still
answers ok with `in_grace_period: true` and `grace_until`; then `expired`. Seats: a limit of
0 is unlimited.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

from aiosqlite import Connection

from daemon import metrics
from daemon.licensing import events, keys, models, outbox, store, store_machines
from daemon.licensing.answers import Refusal, SeatAnswer, SeatCeiling, Valid
from daemon.licensing.core import Audit, now, record
from daemon.licensing.errors import BadRequest, NotFound
from daemon.licensing.state import (
    BAD_SIGNATURE,
    KeyIdentity,
    LicenseReader,
    LicenseView,
    VerifiedKeys,
    iso_time,
)


@dataclass(frozen=True, slots=True)
class _SeatClaim:
    """Validation needs a seat that was free when read; claiming it writes to the database."""

    view: LicenseView
    fingerprint_hash: str


def _has_free_seat(limit: int, taken: int, ceiling: int) -> bool:
    """`limit` 0 is Keysat's unlimited seats: up to the server's `ceiling` (0: none)."""
    if limit == 0:
        return ceiling == 0 or taken < ceiling
    return taken < limit


class Validation:
    def __init__(
        self,
        pool: Any,
        *,
        write_lock: asyncio.Lock,
        audit: Audit,
        reader: LicenseReader,
        verified: VerifiedKeys,
        unlimited_seats: int,
        machine_history: int,
    ) -> None:
        self._pool = pool
        self._write_lock = write_lock
        self._audit = audit
        # Reads the committed rows on every call, outside the pool (see `state`).
        self._reader = reader
        # Rekeyed in place when the operator imports an issuer key.
        self._verified = verified
        self._unlimited_seats = unlimited_seats
        self._machine_history = machine_history

    async def validate(self, request: models.ValidateRequest) -> Valid | Refusal:
        """Always an answer, never an exception: Valid, or a Refusal with its reason."""
        verdict = self._judge(request, may_claim=True)
        if isinstance(verdict, _SeatClaim):
            await self._claim_seat(
                verdict.view.id, verdict.fingerprint_hash, request.hostname, request.platform
            )
            verdict = self._judge(request, may_claim=False)
        assert not isinstance(verdict, _SeatClaim)
        metrics.record_validation(verdict.reason if isinstance(verdict, Refusal) else "ok")
        return verdict

    def _judge(
        self, request: models.ValidateRequest, *, may_claim: bool
    ) -> Valid | Refusal | _SeatClaim:
        try:
            identity = self._verified.identity_of(request.key)
        except keys.KeyFormatError:
            return Refusal(ok=False, reason="bad_format")
        if identity is BAD_SIGNATURE:
            return Refusal(ok=False, reason="bad_signature")
        assert isinstance(identity, KeyIdentity)
        fingerprint = request.fingerprint
        fp_hash = None if fingerprint is None else keys.fingerprint_hash(fingerprint).hex()
        view = self._reader.view(identity.license_id, fp_hash)
        if view is None or view.product_id != identity.product_id:
            return Refusal(ok=False, reason="not_found")
        if view.status != "active":
            return Refusal(ok=False, reason=view.status)
        if request.product_slug is not None and request.product_slug != view.product_slug:
            return Refusal(ok=False, reason="product_mismatch")
        grace_until = _grace_until(view)
        if view.expires_at is not None and time.time() >= view.expires_at + view.grace_seconds:
            return _refusal(
                view, "expired", expires_at=view.expires_at_text, grace_until=grace_until
            )
        if fp_hash is not None:
            if view.fingerprint_hash is not None and fp_hash != view.fingerprint_hash:
                return _refusal(view, "fingerprint_mismatch")
            if view.machine_id is None:
                taken = self._reader.active_seats(view.id)
                if may_claim and _has_free_seat(view.max_machines, taken, self._unlimited_seats):
                    return _SeatClaim(view, fp_hash)
                # One seat taken by another machine is a binding mismatch; a full multi-seat
                # license is out of seats, an unlimited one at the server's ceiling.
                reason = "fingerprint_mismatch" if view.max_machines == 1 else "too_many_machines"
                ceiling = self._unlimited_seats if view.max_machines == 0 else None
                return _refusal(view, reason, max_machines=view.max_machines, seat_ceiling=ceiling)
        elif view.fingerprint_hash is not None:
            # A key bound to one machine proves nothing without that machine's fingerprint.
            return _refusal(view, "fingerprint_mismatch")
        in_grace = view.expires_at is not None and time.time() >= view.expires_at
        return Valid(
            license_id=view.id,
            product_id=view.product_id,
            product_slug=view.product_slug,
            issued_at=view.issued_at_text,
            expires_at=view.expires_at_text,
            grace_until=grace_until,
            in_grace_period=in_grace,
            is_trial=view.is_trial,
            entitlements=list(view.entitlements),
            status=view.status,
            machine_id=view.machine_id,
            max_machines=view.max_machines,
        )

    # ----- machines -----

    async def activate(self, request: models.ActivateRequest) -> SeatAnswer:
        fp_hash = keys.fingerprint_hash(request.fingerprint).hex()
        view = self._license_for_machine_call(request.key, fp_hash)
        refusal = self._machine_refusal(view, fp_hash)
        if refusal is not None:
            return refusal
        machine_id = await self._claim_seat(view.id, fp_hash, request.hostname, request.platform)
        if machine_id is None:
            return self._seat_answer(view, None, reason="too_many_machines")
        return self._seat_answer(view, machine_id)

    async def heartbeat(self, request: models.HeartbeatRequest) -> SeatAnswer:
        fp_hash = keys.fingerprint_hash(request.fingerprint).hex()
        view = self._license_for_machine_call(request.key, fp_hash)
        refusal = self._machine_refusal(view, fp_hash)
        if refusal is not None:
            return refusal
        if view.machine_id is None:
            return self._seat_answer(view, None, reason="not_activated")
        async with self._pool.transaction() as conn:
            await store_machines.touch_machine(conn, view.machine_id, now())
        return self._seat_answer(view, view.machine_id)

    async def deactivate(self, request: models.DeactivateRequest) -> SeatAnswer:
        fp_hash = keys.fingerprint_hash(request.fingerprint).hex()
        view = self._license_for_machine_call(request.key, fp_hash)
        if view.machine_id is None:
            return self._seat_answer(view, None, reason="not_found")
        reason = request.reason or "client_requested"
        await self._deactivate_machine(view.id, view.machine_id, reason, audited=False)
        return self._seat_answer(view, view.machine_id)

    def _license_for_machine_call(self, key: str, fp_hash: str) -> LicenseView:
        try:
            identity = self._verified.identity_of(key)
        except keys.KeyFormatError as e:
            raise BadRequest(f"'key' is not a license key: {e}") from e
        if identity is BAD_SIGNATURE:
            raise BadRequest(
                "'key' was not issued by this server: the signature was not made by this "
                "server's issuer key"
            )
        assert isinstance(identity, KeyIdentity)
        view = self._reader.view(identity.license_id, fp_hash)
        if view is None:
            raise NotFound(f"license {identity.license_id}")
        return view

    def _machine_refusal(self, view: LicenseView, fp_hash: str) -> SeatAnswer | None:
        if view.status != "active":
            return self._seat_answer(view, None, reason=view.status)
        if view.expires_at is not None and time.time() >= view.expires_at + view.grace_seconds:
            return self._seat_answer(view, None, reason="expired")
        if view.fingerprint_hash is not None and fp_hash != view.fingerprint_hash:
            return self._seat_answer(view, None, reason="fingerprint_mismatch")
        return None

    def _seat_answer(
        self, view: LicenseView, machine_id: str | None, *, reason: str | None = None
    ) -> SeatAnswer:
        """The machine routes' answer, with the seats in use as committed now; an unlimited
        license at the server's ceiling says the ceiling and the setting that sets it."""
        seats = {
            "ok": reason is None,
            "reason": reason,
            "machine_id": machine_id,
            "active_count": self._reader.active_seats(view.id),
            "max_machines": view.max_machines,
        }
        if reason != "too_many_machines" or view.max_machines != 0:
            return SeatAnswer(**seats)
        return SeatCeiling(
            **seats,
            seat_ceiling=self._unlimited_seats,
            message=(
                f"this license has unlimited seats, which this server caps at "
                f"{self._unlimited_seats} active machines (KEYSMITH_UNLIMITED_SEATS, on StartOS "
                "the action 'Server limits'); nothing was activated. Deactivate a machine, or ask "
                "the seller to raise the ceiling"
            ),
        )

    async def _claim_seat(
        self, license_id: str, fp_hash: str, hostname: str | None, platform: str | None
    ) -> str | None:
        """Take a seat for this fingerprint (or refresh its own); None if none is free.

        Nothing is loaded: the fingerprint is found by the (license_id, fingerprint) unique
        index, and the seats are counted on the covering state index of 0012 (a walk over the
        license's active entries, so it still grows with the seats in use, slowly: 0.37 ms at
        100 seats, 0.45 ms at 2,000 in bench/RESULTS.md).
        """
        async with self._write_lock:
            at = now()
            async with self._pool.transaction() as conn:
                license_row = await store.seat_limit_of(conn, license_id)
                if license_row is None or license_row["status"] != "active":
                    return None
                known = await store_machines.machine_by_fingerprint(conn, license_id, fp_hash)
                if known is not None and known["deactivated_at"] is None:
                    await store_machines.reactivate_machine(
                        conn, known["id"], hostname, platform, at
                    )
                    return known["id"]
                taken = await store_machines.active_seats(conn, license_id)
                if not _has_free_seat(license_row["max_machines"], taken, self._unlimited_seats):
                    return None
                if known is not None:
                    await store_machines.reactivate_machine(
                        conn, known["id"], hostname, platform, at
                    )
                    await _activated(conn, known["id"], license_id, fp_hash, hostname, platform, at)
                    return known["id"]
                machine_id = str(uuid.uuid4())
                await store_machines.insert_machine(
                    conn,
                    {
                        "id": machine_id,
                        "license_id": license_id,
                        "fingerprint": fp_hash,
                        "hostname": hostname,
                        "platform": platform,
                        "now": at,
                    },
                )
                await _activated(conn, machine_id, license_id, fp_hash, hostname, platform, at)
            return machine_id

    async def _deactivate_machine(
        self, license_id: str, machine_id: str, reason: str, *, audited: bool
    ) -> bool:
        async with self._write_lock:
            at = now()
            async with self._pool.transaction() as conn:
                changed = await store_machines.deactivate_machine(conn, machine_id, reason, at)
                await store_machines.purge_machine_history(
                    conn, license_id, keep=self._machine_history
                )
                if changed:
                    gone = events.MachineDeactivated(
                        license_id=license_id, machine_id=machine_id, reason=reason
                    )
                    await outbox.emit(conn, "machine.deactivated", gone, at)
                if audited and changed:
                    await record(
                        conn,
                        self._audit.acting,
                        "machine.deactivate",
                        f"machine:{machine_id}",
                        {"license_id": license_id, "reason": reason},
                        at,
                    )
            return bool(changed)


async def _activated(
    conn: Connection,
    machine_id: str,
    license_id: str,
    fp_hash: str,
    hostname: str | None,
    platform: str | None,
    at: int,
) -> None:
    """A seat taken (a new machine, or a deactivated one back): `machine.activated`."""
    taken = events.MachineActivated(
        license_id=license_id,
        machine_id=machine_id,
        fingerprint_hash=fp_hash,
        hostname=hostname,
        platform=platform,
    )
    await outbox.emit(conn, "machine.activated", taken, at)


def _grace_until(view: LicenseView) -> str | None:
    if view.expires_at is None or not view.grace_seconds:
        return None
    return iso_time(view.expires_at + view.grace_seconds)


def _refusal(view: LicenseView, reason: str, **extra: Any) -> Refusal:
    return Refusal(ok=False, reason=reason, license_id=view.id, product_id=view.product_id, **extra)
