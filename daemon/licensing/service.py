"""The licensing service: products, policies, licenses, seats, codes, and validation.

The API calls this; this never calls the API. Every write is one transaction
(`pool.transaction()`), and admin writes add an audit row in that same transaction.
Validation reads the committed rows on every call (see `daemon.licensing.state`), so a write
by this process, another daemon or a StartOS action is seen by the very next validation.
Writes of this process are serialised by one asyncio lock.

Fingerprints: clients send a fingerprint string (the published client hashes the machine's
raw identifier first). The server stores and compares only SHA-256 hex of what it received,
and a fingerprint-bound key signs that same hash, so `hash_fingerprint(raw)` in the client
equals the key's `fingerprint_hash` when the client sent `raw`.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from daemon import metrics, settings
from daemon.licensing import inputs, keys, store
from daemon.licensing.errors import BadRequest, Conflict, NotFound, PaymentNotConfigured
from daemon.licensing.state import (
    BAD_SIGNATURE,
    KeyIdentity,
    LicenseReader,
    LicenseView,
    VerifiedKeys,
    iso_time,
)
from daemon.storage import StorageHealth

log = logging.getLogger("keysmith.licensing")

ADMIN_KEY_SETTING = "admin_api_key"
# Who the audit log names for an admin write: the HTTP admin API, or a StartOS action.
AdminActor = Literal["admin", "action"]
SECONDS_PER_DAY = 86_400
DISCOUNT_KINDS = ("percent", "fixed_sats", "free_license", "set_price")
LICENSE_STATUSES = ("active", "revoked", "suspended")
# The reasons the published client knows; validate answers only these (or ok).
REASONS = (
    "bad_format",
    "bad_signature",
    "not_found",
    "revoked",
    "suspended",
    "expired",
    "product_mismatch",
    "fingerprint_mismatch",
    "too_many_machines",
)
NO_PAYMENT_PROVIDER = (
    "no payment provider is configured on this Keysmith server, so purchases are "
    "unavailable; nothing was charged or recorded. Ask the seller for a license key or a "
    "free-license code (POST /v1/redeem)."
)


@dataclass(frozen=True, slots=True)
class _SeatClaim:
    """Validation needs a seat that was free when read; claiming it writes to the database."""

    view: LicenseView
    fingerprint_hash: str


@dataclass(frozen=True, slots=True)
class Limits:
    """The memory and history bounds of the service (`daemon.settings` documents each).

    Deactivated machines beyond `machine_history` per license are deleted in the transaction
    that deactivates another, so activate/deactivate churn cannot grow the table.
    """

    key_cache_entries: int = settings.DEFAULT_KEY_CACHE_ENTRIES
    key_cache_bytes: int = settings.DEFAULT_KEY_CACHE_BYTES
    machine_history: int = settings.DEFAULT_MACHINE_HISTORY


class Licensing:
    def __init__(
        self,
        pool: Any,
        issuer: keys.IssuerKey,
        issuer_id: int,
        admin_api_key: str,
        limits: Limits,
        *,
        actor: AdminActor = "admin",
    ) -> None:
        self._pool = pool
        self._actor = actor
        self._issuer = issuer
        self._issuer_id = issuer_id
        self._admin_key = admin_api_key.encode("utf-8")
        self._reader = LicenseReader(pool.path)
        self._verified = VerifiedKeys(
            issuer.public,
            max_entries=limits.key_cache_entries,
            max_bytes=limits.key_cache_bytes,
        )
        self._machine_history = limits.machine_history
        self._write_lock = asyncio.Lock()
        self.public_key_pem = issuer.public_pem()
        self._result_counters: dict[str, Any] = {}

    # ----- start -----

    @classmethod
    async def open(
        cls,
        pool: Any,
        *,
        admin_api_key: str | None = None,
        limits: Limits | None = None,
        actor: AdminActor = "admin",
    ) -> Licensing:
        """Load (or on first boot create) the issuer key and the admin key.

        An admin key given by the environment wins and is stored, so the value in the
        database (which the StartOS action shows) is always the one that works.
        """
        now = _now()
        async with pool.transaction() as conn:
            row = await store.active_issuer_key(conn)
            if row is None:
                issuer = keys.IssuerKey.generate()
                issuer_id = await store.insert_issuer_key(
                    conn, issuer.private_bytes(), issuer.public_bytes(), now
                )
                await store.audit(
                    conn,
                    actor="system",
                    action="issuer_key.create",
                    subject=f"issuer_key:{issuer_id}",
                    detail={"algorithm": "ed25519"},
                    now=now,
                )
                log.info(
                    "first boot: created the Ed25519 issuer key", extra={"issuer_key_id": issuer_id}
                )
            else:
                issuer = keys.IssuerKey.from_private_bytes(bytes(row["private_key"]))
                issuer_id = row["id"]
            admin_key = await _settle_admin_key(conn, admin_api_key, now)
        service = cls(pool, issuer, issuer_id, admin_key, limits or Limits(), actor=actor)
        metrics.watch_key_cache(service._verified.stats)
        return service

    def close(self) -> None:
        self._reader.close()

    @property
    def storage(self) -> StorageHealth:
        """How the pool's writes are faring, for /healthz."""
        return self._pool.health

    @property
    def admin_api_key(self) -> str:
        """For the StartOS properties page and the log scrubber; never log it."""
        return self._admin_key.decode("utf-8")

    def admin_key_matches(self, presented: str) -> bool:
        """Constant-time comparison, so response timing says nothing about the key."""
        # surrogateescape: a header with non-UTF-8 bytes is simply a wrong key, not an error.
        return hmac.compare_digest(presented.encode("utf-8", "surrogateescape"), self._admin_key)

    # ----- validation (the hot path) -----

    async def validate(
        self,
        key: object,
        product_slug: str | None = None,
        fingerprint: str | None = None,
        hostname: str | None = None,
        platform: str | None = None,
    ) -> dict[str, Any]:
        """Always an answer, never an exception: {ok: true, ...} or {ok: false, reason}."""
        verdict = self._judge(key, product_slug, fingerprint, may_claim=True)
        if isinstance(verdict, _SeatClaim):
            await self._claim_seat(verdict.view.id, verdict.fingerprint_hash, hostname, platform)
            verdict = self._judge(key, product_slug, fingerprint, may_claim=False)
        assert isinstance(verdict, dict)
        self._count(verdict.get("reason") or "ok")
        return verdict

    def _judge(
        self, key: object, product_slug: str | None, fingerprint: str | None, *, may_claim: bool
    ) -> dict[str, Any] | _SeatClaim:
        try:
            identity = self._verified.identity_of(key)
        except keys.KeyFormatError:
            return {"ok": False, "reason": "bad_format"}
        if identity is BAD_SIGNATURE:
            return {"ok": False, "reason": "bad_signature"}
        assert isinstance(identity, KeyIdentity)
        fp_hash = None if fingerprint is None else keys.fingerprint_hash(fingerprint).hex()
        view = self._reader.view(identity.license_id, fp_hash)
        if view is None or view.product_id != identity.product_id:
            return {"ok": False, "reason": "not_found"}
        if view.status != "active":
            return {"ok": False, "reason": view.status}
        if product_slug is not None and product_slug != view.product_slug:
            return {"ok": False, "reason": "product_mismatch"}
        if view.expires_at is not None and time.time() >= view.expires_at:
            return _refusal(view, "expired", expires_at=view.expires_at_text)
        if fp_hash is not None:
            if view.fingerprint_hash is not None and fp_hash != view.fingerprint_hash:
                return _refusal(view, "fingerprint_mismatch")
            if view.machine_id is None:
                if may_claim and self._reader.active_seats(view.id) < view.max_machines:
                    return _SeatClaim(view, fp_hash)
                # One seat taken by another machine is a binding mismatch; a full multi-seat
                # license is out of seats.
                reason = "fingerprint_mismatch" if view.max_machines == 1 else "too_many_machines"
                return _refusal(view, reason, max_machines=view.max_machines)
        elif view.fingerprint_hash is not None:
            # A key bound to one machine proves nothing without that machine's fingerprint.
            return _refusal(view, "fingerprint_mismatch")
        return {
            "ok": True,
            "license_id": view.id,
            "product_id": view.product_id,
            "product_slug": view.product_slug,
            "issued_at": view.issued_at_text,
            "expires_at": view.expires_at_text,
            "in_grace_period": False,
            "is_trial": view.is_trial,
            "entitlements": list(view.entitlements),
            "status": view.status,
            "machine_id": view.machine_id,
            "max_machines": view.max_machines,
        }

    def _count(self, result: str) -> None:
        counter = self._result_counters.get(result)
        if counter is None:
            counter = self._result_counters[result] = metrics.VALIDATIONS.labels(result=result)
        counter.inc()

    # ----- machines -----

    async def activate(
        self, key: str, fingerprint: str, hostname: str | None, platform: str | None
    ) -> dict[str, Any]:
        fp_hash = keys.fingerprint_hash(fingerprint).hex()
        view = self._license_for_machine_call(key, fp_hash)
        refusal = self._machine_refusal(view, fp_hash)
        if refusal is not None:
            return refusal
        machine_id = await self._claim_seat(view.id, fp_hash, hostname, platform)
        if machine_id is None:
            return self._seat_answer(view, None, reason="too_many_machines")
        return self._seat_answer(view, machine_id)

    async def heartbeat(self, key: str, fingerprint: str) -> dict[str, Any]:
        fp_hash = keys.fingerprint_hash(fingerprint).hex()
        view = self._license_for_machine_call(key, fp_hash)
        refusal = self._machine_refusal(view, fp_hash)
        if refusal is not None:
            return refusal
        if view.machine_id is None:
            return self._seat_answer(view, None, reason="not_activated")
        async with self._pool.transaction() as conn:
            await store.touch_machine(conn, view.machine_id, _now())
        return self._seat_answer(view, view.machine_id)

    async def deactivate(self, key: str, fingerprint: str, reason: str | None) -> dict[str, Any]:
        view = self._license_for_machine_call(key, keys.fingerprint_hash(fingerprint).hex())
        if view.machine_id is None:
            return self._seat_answer(view, None, reason="not_found")
        await self._deactivate_machine(
            view.id, view.machine_id, reason or "client_requested", actor=None
        )
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

    def _machine_refusal(self, view: LicenseView, fp_hash: str) -> dict[str, Any] | None:
        if view.status != "active":
            return self._seat_answer(view, None, reason=view.status)
        if view.expires_at is not None and time.time() >= view.expires_at:
            return self._seat_answer(view, None, reason="expired")
        if view.fingerprint_hash is not None and fp_hash != view.fingerprint_hash:
            return self._seat_answer(view, None, reason="fingerprint_mismatch")
        return None

    def _seat_answer(
        self, view: LicenseView, machine_id: str | None, *, reason: str | None = None
    ) -> dict[str, Any]:
        """The machine routes' answer, with the seats in use as committed now."""
        return {
            "ok": reason is None,
            "reason": reason,
            "machine_id": machine_id,
            "active_count": self._reader.active_seats(view.id),
            "max_machines": view.max_machines,
        }

    async def _claim_seat(
        self, license_id: str, fp_hash: str, hostname: str | None, platform: str | None
    ) -> str | None:
        """Take a seat for this fingerprint (or refresh its own); None if none is free.

        Costs the same at 2,000 seats as at one: the fingerprint is found by the
        (license_id, fingerprint) unique index and the seats are counted on the partial
        index of active machines, never loaded.
        """
        async with self._write_lock:
            now = _now()
            async with self._pool.transaction() as conn:
                license_row = await store.seat_limit_of(conn, license_id)
                if license_row is None or license_row["status"] != "active":
                    return None
                known = await store.machine_by_fingerprint(conn, license_id, fp_hash)
                if known is not None and known["deactivated_at"] is None:
                    await store.reactivate_machine(conn, known["id"], hostname, platform, now)
                    return known["id"]
                if await store.active_seats(conn, license_id) >= license_row["max_machines"]:
                    return None
                if known is not None:
                    await store.reactivate_machine(conn, known["id"], hostname, platform, now)
                    return known["id"]
                machine_id = str(uuid.uuid4())
                await store.insert_machine(
                    conn,
                    {
                        "id": machine_id,
                        "license_id": license_id,
                        "fingerprint": fp_hash,
                        "hostname": hostname,
                        "platform": platform,
                        "now": now,
                    },
                )
            return machine_id

    async def _deactivate_machine(
        self, license_id: str, machine_id: str, reason: str, *, actor: str | None
    ) -> bool:
        async with self._write_lock:
            now = _now()
            async with self._pool.transaction() as conn:
                changed = await store.deactivate_machine(conn, machine_id, reason, now)
                await store.purge_machine_history(conn, license_id, keep=self._machine_history)
                if actor is not None and changed:
                    await store.audit(
                        conn,
                        actor=actor,
                        action="machine.deactivate",
                        subject=f"machine:{machine_id}",
                        detail={"license_id": license_id, "reason": reason},
                        now=now,
                    )
            return bool(changed)

    # ----- public catalogue -----

    async def public_products(self) -> list[dict[str, Any]]:
        async with self._pool.connection() as conn:
            rows = await store.list_products(conn, active_only=True)
        return [product_json(row) for row in rows]

    async def public_product(self, slug: str) -> dict[str, Any]:
        async with self._pool.connection() as conn:
            row = await store.product_by_slug(conn, slug)
        if row is None or not row["active"]:
            raise NotFound(f"product '{slug}'")
        return product_json(row)

    async def public_policies(self, slug: str) -> dict[str, Any]:
        async with self._pool.connection() as conn:
            product = await store.product_by_slug(conn, slug)
            if product is None or not product["active"]:
                raise NotFound(f"product '{slug}'")
            policies = await store.list_policies(conn, product["id"], public_only=True)
        return {
            "product": {
                "slug": product["slug"],
                "name": product["name"],
                "description": product["description"],
                "base_price_sats": product["price_sats"],
                "entitlements_catalog": _listed_json(product, "entitlements_catalog", []),
            },
            "policies": [public_policy_json(row) for row in policies],
        }

    # ----- purchase (no provider) and free-license redemption -----

    def start_purchase(self) -> dict[str, Any]:
        """Purchases need a payment provider; none exists yet (payments are out of scope)."""
        raise PaymentNotConfigured(NO_PAYMENT_PROVIDER)

    async def redeem(
        self, product_slug: str, code: str, buyer_email: str | None, buyer_note: str | None
    ) -> dict[str, Any]:
        async with self._write_lock:
            now = _now()
            async with self._pool.transaction() as conn:
                product = await store.product_by_slug(conn, product_slug)
                if product is None or not product["active"]:
                    raise NotFound(f"product '{product_slug}'")
                row = await store.code_by_text(conn, code)
                if row is None:
                    raise NotFound(f"discount code '{code}'")
                _check_redeemable(row, product, now)
                policy = await self._policy_for(conn, product, row["policy_id"])
                license_row = await self._insert_license(
                    conn,
                    product,
                    policy,
                    note=f"redeemed code {row['code']}",
                    fingerprint=None,
                    expires_at=None,
                    now=now,
                )
                invoice_id, redemption_id = str(uuid.uuid4()), str(uuid.uuid4())
                await store.insert_free_invoice(
                    conn,
                    {
                        "id": invoice_id,
                        "product_id": product["id"],
                        "license_id": license_row["id"],
                        "buyer_email": buyer_email,
                        "buyer_note": buyer_note,
                        "now": now,
                        "policy_id": None if policy is None else policy["id"],
                        "discount_sats": product["price_sats"]
                        if policy is None
                        else policy["price_sats"],
                    },
                )
                await store.insert_redemption(
                    conn,
                    {
                        "id": redemption_id,
                        "code_id": row["id"],
                        "invoice_id": invoice_id,
                        "license_id": license_row["id"],
                        "buyer_email": buyer_email,
                        "now": now,
                    },
                )
                await store.audit(
                    conn,
                    actor="public",
                    action="license.redeem",
                    subject=f"license:{license_row['id']}",
                    detail={"code_id": row["id"], "invoice_id": invoice_id},
                    now=now,
                )
        return {
            "license_id": license_row["id"],
            "license_key": license_row["license_key"],
            "invoice_id": invoice_id,
            "redemption_id": redemption_id,
        }

    # ----- admin: products and policies -----

    async def create_product(self, fields: dict[str, Any]) -> dict[str, Any]:
        now = _now()
        product = {
            "id": str(uuid.uuid4()),
            "slug": fields["slug"],
            "name": fields["name"],
            "description": fields.get("description") or "",
            "price_sats": fields["price_sats"],
            "metadata": json.dumps(fields.get("metadata") or {}, sort_keys=True),
            "entitlements_catalog": json.dumps(fields.get("entitlements_catalog") or []),
            "price_currency": fields.get("price_currency") or "BTC",
            "price_minor": fields.get("price_minor", fields["price_sats"]),
            "now": now,
        }
        async with self._write_lock, self._pool.transaction() as conn:
            if await store.product_by_slug(conn, product["slug"]) is not None:
                raise Conflict(f"a product with slug '{product['slug']}' already exists")
            await store.insert_product(conn, product)
            await store.audit(
                conn,
                actor=self._actor,
                action="product.create",
                subject=f"product:{product['id']}",
                detail={"slug": product["slug"]},
                now=now,
            )
            row = await store.product_by_id(conn, product["id"])
        return product_json(row)

    async def admin_products(self) -> list[dict[str, Any]]:
        async with self._pool.connection() as conn:
            rows = await store.list_products(conn, active_only=False)
        return [product_json(row) for row in rows]

    async def set_product_active(self, product_id: str, active: bool) -> dict[str, Any]:
        now = _now()
        async with self._write_lock, self._pool.transaction() as conn:
            if not await store.set_product_active(conn, product_id, active, now):
                raise NotFound(f"product {product_id}")
            await store.audit(
                conn,
                actor=self._actor,
                action="product.set_active",
                subject=f"product:{product_id}",
                detail={"active": active},
                now=now,
            )
            row = await store.product_by_id(conn, product_id)
        return product_json(row)

    async def create_policy(self, product_ref: dict[str, str], fields: dict[str, Any]) -> dict:
        now = _now()
        async with self._write_lock, self._pool.transaction() as conn:
            product = await _product_by_ref(conn, product_ref)
            if await store.policy_by_slug(conn, product["id"], fields["slug"]) is not None:
                raise Conflict(
                    f"product '{product['slug']}' already has a policy '{fields['slug']}'"
                )
            _check_entitlements_in_catalog(product, fields.get("entitlements") or [])
            policy = {
                "id": str(uuid.uuid4()),
                "product_id": product["id"],
                "slug": fields["slug"],
                "name": fields["name"],
                "description": fields.get("description") or "",
                "price_sats": fields.get("price_sats") or 0,
                "duration_days": fields.get("duration_days"),
                "max_machines": fields.get("max_machines") or 1,
                "is_trial": int(bool(fields.get("is_trial"))),
                "entitlements": json.dumps(fields.get("entitlements") or []),
                "is_public": int(fields.get("is_public", True)),
                "highlighted": int(bool(fields.get("highlighted"))),
                "sort_order": fields.get("sort_order") or 0,
                "is_default": int(bool(fields.get("is_default"))),
                "price_currency": fields.get("price_currency") or "BTC",
                "price_minor": fields.get("price_minor", fields.get("price_sats") or 0),
                "now": now,
            }
            if policy["is_default"]:
                await store.clear_default_policy(conn, product["id"])
            await store.insert_policy(conn, policy)
            await store.audit(
                conn,
                actor=self._actor,
                action="policy.create",
                subject=f"policy:{policy['id']}",
                detail={"product_id": product["id"], "slug": policy["slug"]},
                now=now,
            )
            row = await store.policy_by_id(conn, policy["id"])
        return policy_json(row)

    async def admin_policies(self, product_ref: dict[str, str | None]) -> list[dict[str, Any]]:
        async with self._pool.connection() as conn:
            product_id = None
            if product_ref.get("product_id") or product_ref.get("product_slug"):
                product_id = (await _product_by_ref(conn, product_ref))["id"]
            rows = await store.list_policies(conn, product_id, public_only=False)
        return [policy_json(row) for row in rows]

    async def set_policy_active(self, policy_id: str, active: bool) -> dict[str, Any]:
        now = _now()
        async with self._write_lock, self._pool.transaction() as conn:
            if not await store.set_policy_active(conn, policy_id, active):
                raise NotFound(f"policy {policy_id}")
            await store.audit(
                conn,
                actor=self._actor,
                action="policy.set_active",
                subject=f"policy:{policy_id}",
                detail={"active": active},
                now=now,
            )
            row = await store.policy_by_id(conn, policy_id)
        return policy_json(row)

    # ----- admin: licenses -----

    async def issue_license(
        self,
        product_slug: str,
        policy_slug: str | None,
        note: str | None,
        fingerprint: str | None,
        expires_at: int | None,
    ) -> dict[str, Any]:
        async with self._write_lock:
            now = _now()
            if expires_at is not None and expires_at <= now:
                raise BadRequest("'expires_at' must be in the future")
            async with self._pool.transaction() as conn:
                product = await store.product_by_slug(conn, product_slug)
                if product is None:
                    raise NotFound(f"product '{product_slug}'")
                policy = None
                if policy_slug is not None:
                    policy = await store.policy_by_slug(conn, product["id"], policy_slug)
                    if policy is None:
                        raise NotFound(f"policy '{policy_slug}' of product '{product_slug}'")
                else:
                    policy = await store.default_policy(conn, product["id"])
                license_row = await self._insert_license(
                    conn,
                    product,
                    policy,
                    note=note or "",
                    fingerprint=fingerprint,
                    expires_at=expires_at,
                    now=now,
                )
                await store.audit(
                    conn,
                    actor=self._actor,
                    action="license.issue",
                    subject=f"license:{license_row['id']}",
                    detail={
                        "product_id": product["id"],
                        "policy_id": license_row["policy_id"],
                        "fingerprint_bound": fingerprint is not None,
                    },
                    now=now,
                )
        return {
            "license_id": license_row["id"],
            "product_id": product["id"],
            "license_key": license_row["license_key"],
            "issued_at": iso_time(now),
            "expires_at": iso_time(license_row["expires_at"]),
        }

    async def _insert_license(
        self,
        conn: Any,
        product: Any,
        policy: Any,
        *,
        note: str,
        fingerprint: str | None,
        expires_at: int | None,
        now: int,
    ) -> dict[str, Any]:
        if expires_at is None and policy is not None and policy["duration_days"] is not None:
            expires_at = now + policy["duration_days"] * SECONDS_PER_DAY
        entitlements = [] if policy is None else json.loads(policy["entitlements"])
        is_trial = policy is not None and bool(policy["is_trial"])
        fp_hash = None if fingerprint is None else keys.fingerprint_hash(fingerprint)
        flags = (keys.FLAG_TRIAL if is_trial else 0) | (
            keys.FLAG_FINGERPRINT_BOUND if fp_hash else 0
        )
        license_id = uuid.uuid4()
        payload = keys.KeyPayload(
            product_id=uuid.UUID(product["id"]),
            license_id=license_id,
            issued_at=now,
            expires_at=expires_at or 0,
            fingerprint_hash=fp_hash or keys.UNBOUND_FINGERPRINT,
            flags=flags,
            entitlements=tuple(entitlements),
        )
        row = {
            "id": str(license_id),
            "product_id": product["id"],
            "issuer_key_id": self._issuer_id,
            "license_key": keys.issue_key(self._issuer, payload),
            "issued_at": now,
            "expires_at": expires_at,
            "fingerprint_hash": None if fp_hash is None else fp_hash.hex(),
            "note": note,
            "policy_id": None if policy is None else policy["id"],
            "is_trial": int(is_trial),
            "entitlements": json.dumps(entitlements),
        }
        await store.insert_license(conn, row)
        return row

    async def list_licenses(
        self,
        product_id: str | None,
        status: str | None,
        search: str | None,
        limit: int,
        offset: int,
    ) -> list[dict[str, Any]]:
        if status is not None and status not in LICENSE_STATUSES:
            raise BadRequest(f"'status' must be one of {', '.join(LICENSE_STATUSES)}")
        async with self._pool.connection() as conn:
            rows = await store.list_licenses(
                conn,
                product_id=product_id,
                status=status,
                search=search,
                limit=limit,
                offset=offset,
            )
        return [license_json(row) for row in rows]

    async def get_license(self, license_id: str) -> dict[str, Any]:
        async with self._pool.connection() as conn:
            row = await store.license_by_id(conn, license_id)
        if row is None:
            raise NotFound(f"license {license_id}")
        return license_json(row)

    async def revoke(self, license_id: str, reason: str | None) -> dict[str, Any]:
        return await self._change_status(
            license_id,
            "license.revoke",
            {"reason": reason},
            lambda conn, now: store.revoke_license(conn, license_id, reason, now),
            refusal="license {id} is already revoked",
            refusal_error=NotFound,
        )

    async def suspend(self, license_id: str) -> dict[str, Any]:
        return await self._change_status(
            license_id,
            "license.suspend",
            {},
            lambda conn, now: store.suspend_license(conn, license_id, now),
            refusal="license {id} is {status}; only an active license can be suspended",
        )

    async def unsuspend(self, license_id: str) -> dict[str, Any]:
        return await self._change_status(
            license_id,
            "license.unsuspend",
            {},
            lambda conn, now: store.unsuspend_license(conn, license_id),
            refusal="license {id} is {status}; only a suspended license can be unsuspended",
        )

    async def _change_status(
        self,
        license_id: str,
        action: str,
        detail: dict[str, Any],
        update: Any,
        *,
        refusal: str,
        refusal_error: type[Exception] = Conflict,
    ) -> dict[str, Any]:
        async with self._write_lock:
            now = _now()
            async with self._pool.transaction() as conn:
                before = await store.license_by_id(conn, license_id)
                if before is None:
                    raise NotFound(f"license {license_id}")
                if not await update(conn, now):
                    raise refusal_error(refusal.format(id=license_id, status=before["status"]))
                await store.audit(
                    conn,
                    actor=self._actor,
                    action=action,
                    subject=f"license:{license_id}",
                    detail={"from": before["status"], **detail},
                    now=now,
                )
                row = await store.license_by_id(conn, license_id)
        return license_json(row)

    # ----- admin: discount codes -----

    async def create_code(self, fields: dict[str, Any]) -> dict[str, Any]:
        kind = fields["kind"]
        if kind not in DISCOUNT_KINDS:
            raise BadRequest(f"'kind' must be one of {', '.join(DISCOUNT_KINDS)}; got {kind!r}")
        amount = fields.get("amount") or 0
        if kind == "percent" and not 1 <= amount <= 100:
            raise BadRequest("a percent code needs 'amount' between 1 and 100")
        now = _now()
        if fields.get("expires_at") is not None and fields["expires_at"] <= now:
            raise BadRequest("'expires_at' must be in the future")
        async with self._write_lock, self._pool.transaction() as conn:
            product_id = policy_id = None
            if fields.get("product_slug"):
                product = await store.product_by_slug(conn, fields["product_slug"])
                if product is None:
                    raise NotFound(f"product '{fields['product_slug']}'")
                product_id = product["id"]
                if fields.get("policy_slug"):
                    policy = await store.policy_by_slug(conn, product_id, fields["policy_slug"])
                    if policy is None:
                        raise NotFound(f"policy '{fields['policy_slug']}'")
                    policy_id = policy["id"]
            elif fields.get("policy_slug"):
                raise BadRequest("'policy_slug' needs 'product_slug' too")
            if await store.code_by_text(conn, fields["code"]) is not None:
                raise Conflict(f"a discount code '{fields['code']}' already exists")
            code = {
                "id": str(uuid.uuid4()),
                "code": fields["code"],
                "product_id": product_id,
                "policy_id": policy_id,
                "kind": kind,
                "amount": amount,
                "max_redemptions": fields.get("max_redemptions"),
                "expires_at": fields.get("expires_at"),
                "note": fields.get("note") or "",
                "now": now,
            }
            await store.insert_code(conn, code)
            await store.audit(
                conn,
                actor=self._actor,
                action="discount_code.create",
                subject=f"discount_code:{code['id']}",
                detail={"kind": kind, "product_id": product_id},
                now=now,
            )
            row = await store.code_by_id(conn, code["id"])
        return code_json(row)

    async def list_codes(self, product_slug: str | None) -> list[dict[str, Any]]:
        async with self._pool.connection() as conn:
            product_id = None
            if product_slug is not None:
                product = await store.product_by_slug(conn, product_slug)
                if product is None:
                    raise NotFound(f"product '{product_slug}'")
                product_id = product["id"]
            rows = await store.list_codes(conn, product_id=product_id)
        return [code_json(row) for row in rows]

    async def set_code_active(self, code_id: str, active: bool) -> dict[str, Any]:
        now = _now()
        async with self._write_lock, self._pool.transaction() as conn:
            if not await store.set_code_disabled(conn, code_id, not active):
                raise NotFound(f"discount code {code_id}")
            await store.audit(
                conn,
                actor=self._actor,
                action="discount_code.set_active",
                subject=f"discount_code:{code_id}",
                detail={"active": active},
                now=now,
            )
            row = await store.code_by_id(conn, code_id)
        return code_json(row)

    # ----- admin: machines and audit -----

    async def list_machines(
        self, license_id: str | None, include_inactive: bool, limit: int
    ) -> list[dict[str, Any]]:
        async with self._pool.connection() as conn:
            rows = await store.list_machines(
                conn, license_id=license_id, include_inactive=include_inactive, limit=limit
            )
        return [machine_json(row) for row in rows]

    async def admin_deactivate_machine(self, machine_id: str, reason: str | None) -> dict:
        async with self._pool.connection() as conn:
            row = await store.machine_by_id(conn, machine_id)
        if row is None:
            raise NotFound(f"machine {machine_id}")
        if row["deactivated_at"] is not None:
            raise Conflict(f"machine {machine_id} is already deactivated")
        await self._deactivate_machine(
            row["license_id"], machine_id, reason or "admin deactivate", actor=self._actor
        )
        async with self._pool.connection() as conn:
            row = await store.machine_by_id(conn, machine_id)
        return machine_json(row)

    async def audit_entries(
        self, action: str | None, subject: str | None, limit: int, before_id: int | None
    ) -> list[dict[str, Any]]:
        async with self._pool.connection() as conn:
            rows = await store.list_audit(
                conn, action=action, subject=subject, limit=limit, before_id=before_id
            )
        return [
            {
                "id": row["id"],
                "created_at": iso_time(row["created_at"]),
                "actor": row["actor"],
                "action": row["action"],
                "subject": row["subject"],
                "detail": json.loads(row["detail"]),
            }
            for row in rows
        ]

    async def _policy_for(self, conn: Any, product: Any, policy_id: str | None) -> Any:
        if policy_id is not None:
            return await store.policy_by_id(conn, policy_id)
        return await store.default_policy(conn, product["id"])


# ---------- helpers ----------


async def _settle_admin_key(conn: Any, given: str | None, now: int) -> str:
    stored = await store.get_setting(conn, ADMIN_KEY_SETTING)
    if given is not None:
        if stored is None or not hmac.compare_digest(stored.encode(), given.encode()):
            await store.put_setting(conn, ADMIN_KEY_SETTING, given, now)
            await store.audit(
                conn,
                actor="system",
                action="admin_key.set",
                subject="setting:admin_api_key",
                detail={"source": "environment"},
                now=now,
            )
        return given
    if stored is not None:
        return stored
    generated = secrets.token_urlsafe(32)
    await store.put_setting(conn, ADMIN_KEY_SETTING, generated, now)
    await store.audit(
        conn,
        actor="system",
        action="admin_key.set",
        subject="setting:admin_api_key",
        detail={"source": "generated"},
        now=now,
    )
    log.info(
        "first boot: generated an admin API key; it is stored in the database "
        "(settings.admin_api_key) and shown by the StartOS action, never in logs"
    )
    return generated


async def _product_by_ref(conn: Any, ref: dict[str, Any]) -> Any:
    if ref.get("product_id"):
        product = await store.product_by_id(conn, ref["product_id"])
        if product is None:
            raise NotFound(f"product {ref['product_id']}")
        return product
    if ref.get("product_slug"):
        product = await store.product_by_slug(conn, ref["product_slug"])
        if product is None:
            raise NotFound(f"product '{ref['product_slug']}'")
        return product
    raise BadRequest("name the product with 'product_slug' or 'product_id'")


def _check_entitlements_in_catalog(product: Any, entitlements: list[str]) -> None:
    catalog = {entry["slug"] for entry in json.loads(product["entitlements_catalog"])}
    unknown = [slug for slug in entitlements if slug not in catalog]
    if catalog and unknown:
        raise BadRequest(
            f"entitlements {unknown} are not in product '{product['slug']}''s catalog "
            f"({sorted(catalog)})"
        )


def _check_redeemable(code: Any, product: Any, now: int) -> None:
    name = code["code"]
    if code["kind"] != "free_license":
        raise BadRequest(
            f"code '{name}' is a {code['kind']} discount for purchases, not a free-license code"
        )
    if code["product_id"] is not None and code["product_id"] != product["id"]:
        raise BadRequest(f"code '{name}' is not valid for product '{product['slug']}'")
    if code["disabled"]:
        raise Conflict(f"code '{name}' has been disabled by the seller")
    if code["expires_at"] is not None and now >= code["expires_at"]:
        raise Conflict(f"code '{name}' expired at {iso_time(code['expires_at'])}")
    if code["max_redemptions"] is not None and code["redemptions"] >= code["max_redemptions"]:
        raise Conflict(
            f"code '{name}' has already been redeemed {code['redemptions']} time(s), its "
            "limit; no new license was issued"
        )


def _refusal(view: LicenseView, reason: str, **extra: Any) -> dict[str, Any]:
    return {
        "ok": False,
        "reason": reason,
        "license_id": view.id,
        "product_id": view.product_id,
        **extra,
    }


def _now() -> int:
    return int(time.time())


def product_json(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "slug": row["slug"],
        "name": row["name"],
        "description": row["description"],
        "price_sats": row["price_sats"],
        "price_currency": row["price_currency"],
        "price_minor": row["price_minor"],
        "metadata": _listed_json(row, "metadata", {}),
        "entitlements_catalog": _listed_json(row, "entitlements_catalog", []),
        "active": bool(row["active"]),
        "created_at": iso_time(row["created_at"]),
        "updated_at": iso_time(row["updated_at"]),
    }


def _listed_json(row: Any, column: str, fallback: Any) -> Any:
    """A product's free-form JSON column for an answer. A row that an older version or a hand
    edit left too deep or invalid is shown with `fallback` instead, so one row can never take
    a whole listing down; the row itself is left as it is."""
    try:
        return inputs.stored_json(row[column])
    except ValueError as e:
        _warn_unlistable(row["id"], column, str(e), json.dumps(fallback))
        return fallback


# Once per row and reason, not once per listing: the public catalogue is polled by every client.
@functools.lru_cache(maxsize=1024)
def _warn_unlistable(product_id: str, column: str, reason: str, fallback: str) -> None:
    log.warning(
        f"product {product_id}: its stored {column} cannot be shown ({reason}); answered "
        f"{fallback} in its place. The row is unchanged; rewrite its {column} to valid JSON "
        f"within {inputs.MAX_JSON_DEPTH} levels to show it again",
        extra={"product_id": product_id, "column": column},
    )


def public_policy_json(row: Any) -> dict[str, Any]:
    """The buyer-visible fields the published client's `PublicPolicy` reads."""
    duration_days = row["duration_days"]
    return {
        "slug": row["slug"],
        "name": row["name"],
        "description": row["description"],
        "price_sats": row["price_sats"],
        "duration_seconds": 0 if duration_days is None else duration_days * SECONDS_PER_DAY,
        "max_machines": row["max_machines"],
        "is_trial": bool(row["is_trial"]),
        "entitlements": json.loads(row["entitlements"]),
        "highlighted": bool(row["highlighted"]),
        "is_recurring": False,
        "renewal_period_days": 0,
        "trial_days": (duration_days or 0) if row["is_trial"] else 0,
    }


def policy_json(row: Any) -> dict[str, Any]:
    return {
        **public_policy_json(row),
        "id": row["id"],
        "product_id": row["product_id"],
        "duration_days": row["duration_days"],
        "is_public": bool(row["is_public"]),
        "active": bool(row["active"]),
        "sort_order": row["sort_order"],
        "is_default": bool(row["is_default"]),
        "price_currency": row["price_currency"],
        "price_minor": row["price_minor"],
        "created_at": iso_time(row["created_at"]),
    }


def license_json(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "product_id": row["product_id"],
        "product_slug": row["product_slug"],
        "policy_id": row["policy_id"],
        "policy_slug": row["policy_slug"],
        "license_key": row["license_key"],
        "status": row["status"],
        "issued_at": iso_time(row["issued_at"]),
        "expires_at": iso_time(row["expires_at"]),
        "fingerprint_bound": row["fingerprint_hash"] is not None,
        "fingerprint_hash": row["fingerprint_hash"],
        "note": row["note"],
        "revoked_at": iso_time(row["revoked_at"]),
        "revoke_reason": row["revoke_reason"],
        "suspended_at": iso_time(row["suspended_at"]),
        "is_trial": bool(row["is_trial"]),
        "entitlements": json.loads(row["entitlements"]),
        "max_machines": row["max_machines"],
    }


def code_json(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "code": row["code"],
        "kind": row["kind"],
        "amount": row["amount"],
        "product_id": row["product_id"],
        "product_slug": row["product_slug"],
        "policy_id": row["policy_id"],
        "policy_slug": row["policy_slug"],
        "max_redemptions": row["max_redemptions"],
        "redemptions": row["redemptions"],
        "expires_at": iso_time(row["expires_at"]),
        "active": not row["disabled"],
        "note": row["note"],
        "created_at": iso_time(row["created_at"]),
    }


def machine_json(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "license_id": row["license_id"],
        "fingerprint_hash": row["fingerprint"],
        "hostname": row["hostname"],
        "platform": row["platform"],
        "first_seen_at": iso_time(row["first_seen_at"]),
        "last_seen_at": iso_time(row["last_seen_at"]),
        "active": row["deactivated_at"] is None,
        "deactivated_at": iso_time(row["deactivated_at"]),
        "deactivate_reason": row["deactivate_reason"],
    }


__all__ = ["REASONS", "Licensing"]
