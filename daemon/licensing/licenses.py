"""Licenses for the seller: issue (with Keysat's per-license overrides), find, change status;
machines and the audit log."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiosqlite import Connection

from daemon.licensing import (
    answers,
    events,
    inputs,
    keys,
    models,
    outbox,
    rows,
    store,
    store_machines,
    store_sales,
)
from daemon.licensing.core import Audit, Signer, now
from daemon.licensing.errors import BadRequest, Conflict, NotFound
from daemon.licensing.integrations import EventType
from daemon.licensing.state import iso_time
from daemon.licensing.store import Row
from daemon.licensing.validation import Validation


class Licenses:
    def __init__(
        self,
        pool: Any,
        *,
        write_lock: asyncio.Lock,
        audit: Audit,
        signer: Signer,
        validation: Validation,
    ) -> None:
        self._pool = pool
        self._write_lock = write_lock
        self._audit = audit
        self._signer = signer
        # Deactivates a machine for the seller as a client's deactivate does.
        self._validation = validation

    async def issue_license(self, request: models.LicenseIssue) -> answers.Issued:
        async with self._write_lock:
            at = now()
            expires_at = request.expires_at
            assert expires_at is None or isinstance(expires_at, int)
            if expires_at is not None and expires_at <= at:
                raise BadRequest("'expires_at' must be in the future")
            async with self._pool.transaction() as conn:
                product = await store.product_by_slug(conn, request.product_slug)
                if product is None:
                    raise NotFound(f"product '{request.product_slug}'")
                policy = None
                if request.policy_slug is not None:
                    policy = await store.policy_by_slug(conn, product["id"], request.policy_slug)
                    if policy is None:
                        raise NotFound(
                            f"policy '{request.policy_slug}' of product '{request.product_slug}'"
                        )
                else:
                    policy = await store.default_policy(conn, product["id"])
                row = await self._insert_license(
                    conn, product, policy, request, at, source="admin_issue"
                )
                await self._audit(
                    conn,
                    "license.issue",
                    f"license:{row['id']}",
                    {
                        "product_id": product["id"],
                        "policy_id": row["policy_id"],
                        "fingerprint_bound": request.fingerprint is not None,
                    },
                    at,
                )
        return answers.Issued(
            license_id=row["id"],
            product_id=product["id"],
            license_key=row["license_key"],
            issued_at=iso_time(at),
            expires_at=iso_time(row["expires_at"]),
            entitlements=inputs.shown_json(
                "license", row["id"], "entitlements", row["entitlements"], []
            ),
            is_trial=bool(row["is_trial"]),
            max_machines=await self._seats_of(row["id"]),
        )

    async def _seats_of(self, license_id: str) -> int:
        async with self._pool.connection() as conn:
            found = await store.seat_limit_of(conn, license_id)
        assert found is not None
        return int(found["max_machines"])

    async def _insert_license(
        self,
        conn: Connection,
        product: Row,
        policy: Row | None,
        terms: models.LicenseIssue,
        at: int,
        *,
        source: events.IssueSource,
        invoice_id: str | None = None,
    ) -> dict[str, Any]:
        """Sign and store a key, with its `license.issued`; a term the request leaves None
        takes the policy's (purchases and redemptions pass a LicenseIssue of their own: a note
        and the buyer's email, and the id of the invoice they write next)."""
        expires_at = terms.expires_at
        if expires_at is None and policy is not None and policy["duration_seconds"] is not None:
            expires_at = at + policy["duration_seconds"]
        entitlements = terms.entitlements
        if entitlements is None:
            entitlements = (
                []
                if policy is None
                else inputs.shown_json(
                    "policy", policy["id"], "entitlements", policy["entitlements"], []
                )
            )
        is_trial = terms.is_trial
        if is_trial is None:
            is_trial = policy is not None and bool(policy["is_trial"])
        fingerprint = terms.fingerprint
        fp_hash = None if fingerprint is None else keys.fingerprint_hash(fingerprint)
        flags = (keys.FLAG_TRIAL if is_trial else 0) | (
            keys.FLAG_FINGERPRINT_BOUND if fp_hash else 0
        )
        license_id = uuid.uuid4()
        payload = keys.KeyPayload(
            product_id=uuid.UUID(product["id"]),
            license_id=license_id,
            issued_at=at,
            expires_at=expires_at or 0,
            fingerprint_hash=fp_hash or keys.UNBOUND_FINGERPRINT,
            flags=flags,
            entitlements=tuple(entitlements),
        )
        row = {
            "id": str(license_id),
            "product_id": product["id"],
            "issuer_key_id": self._signer.issuer_id,
            "license_key": keys.issue_key(self._signer.issuer, payload),
            "issued_at": at,
            "expires_at": expires_at,
            "fingerprint_hash": None if fp_hash is None else fp_hash.hex(),
            "note": terms.note or "",
            "policy_id": None if policy is None else policy["id"],
            "is_trial": int(is_trial),
            "entitlements": json.dumps(entitlements),
            "max_machines": terms.max_machines,
            "grace_seconds": terms.grace_seconds,
            "buyer_email": terms.buyer_email,
            "fingerprint": fingerprint,
            "metadata": json.dumps(_issue_metadata(source, terms, invoice_id)),
            "nostr_npub": terms.nostr_npub,
        }
        await store.insert_license(conn, row)
        issued = events.LicenseIssued(
            license_id=row["id"],
            product_id=row["product_id"],
            invoice_id=invoice_id,
            policy_id=row["policy_id"],
            is_trial=bool(is_trial),
            expires_at=iso_time(row["expires_at"]),
            entitlements=list(entitlements),
            source=source,
            license_key=row["license_key"],
            buyer_email=row["buyer_email"],
        )
        await outbox.emit(conn, "license.issued", issued, at)
        return row

    async def list_licenses(self, query: models.LicenseQuery) -> list[answers.License]:
        async with self._pool.connection() as conn:
            found = await store.list_licenses(
                conn, limit=query.limit, offset=query.offset, **_license_filters(query)
            )
        return [rows.license_(row) for row in found]

    async def count_licenses(self, query: models.LicenseQuery) -> int:
        """How many licenses the query's filters select, every page together."""
        async with self._pool.connection() as conn:
            return await store.count_licenses(conn, **_license_filters(query))

    async def get_license(self, license_id: str) -> answers.License:
        async with self._pool.connection() as conn:
            row = await store.license_by_id(conn, license_id)
        if row is None:
            raise NotFound(f"license {license_id}")
        return rows.license_(row)

    async def license_summary(self) -> answers.LicenseSummary:
        async with self._pool.connection() as conn:
            row = await store_sales.license_summary(conn, now())
        return answers.LicenseSummary(**{key: row[key] for key in row.keys()})  # noqa: SIM118

    async def revenue_summary(self) -> answers.RevenueSummary:
        async with self._pool.connection() as conn:
            row = await store_sales.revenue_summary(conn, now())
        return answers.RevenueSummary(**{key: row[key] for key in row.keys()})  # noqa: SIM118

    async def license_counts(self) -> answers.LicenseCounts:
        async with self._pool.connection() as conn:
            by_product, by_policy = await store_sales.license_counts(conn)
        return answers.LicenseCounts(
            by_product={row[0]: row[1] for row in by_product},
            by_policy={row[0]: row[1] for row in by_policy},
        )

    async def revoke(self, license_id: str, reason: str | None) -> answers.StatusChange:
        reason = reason or events.REVOKE_REASON
        return await self._change_status(
            license_id,
            "license.revoke",
            "license.revoked",
            reason,
            lambda conn, at: store.revoke_license(conn, license_id, reason, at),
            refusal="license {id} is already revoked",
        )

    async def suspend(self, license_id: str, reason: str | None = None) -> answers.StatusChange:
        reason = reason or events.SUSPEND_REASON
        return await self._change_status(
            license_id,
            "license.suspend",
            "license.suspended",
            reason,
            lambda conn, at: store.suspend_license(conn, license_id, reason, at),
            refusal="license {id} is {status}; only an active license can be suspended",
        )

    async def unsuspend(self, license_id: str) -> answers.StatusChange:
        return await self._change_status(
            license_id,
            "license.unsuspend",
            "license.unsuspended",
            None,
            lambda conn, at: store.unsuspend_license(conn, license_id),
            refusal="license {id} is {status}; only a suspended license can be unsuspended",
        )

    async def _change_status(
        self,
        license_id: str,
        action: str,
        event: EventType,
        reason: str | None,
        update: Callable[[Connection, int], Awaitable[int]],
        *,
        refusal: str,
    ) -> answers.StatusChange:
        """Keysat answers a change the license's state does not allow with 404, like an
        unknown license: there is no such active (or suspended) license to change."""
        async with self._write_lock:
            at = now()
            async with self._pool.transaction() as conn:
                before = await store.license_by_id(conn, license_id)
                if before is None:
                    raise NotFound(f"license {license_id}")
                if not await update(conn, at):
                    raise NotFound(refusal.format(id=license_id, status=before["status"]))
                detail = {"from": before["status"], "reason": reason}
                await self._audit(conn, action, f"license:{license_id}", detail, at)
                row = await store.license_by_id(conn, license_id)
                change = {
                    "license_id": license_id,
                    "product_id": row["product_id"],
                    "previous_status": before["status"],
                    "status": row["status"],
                }
                payload = (
                    events.LicenseStatusChanged(**change)
                    if reason is None
                    else events.LicenseStopped(**change, reason=reason)
                )
                await outbox.emit(conn, event, payload, at)
        return answers.StatusChange(license=rows.license_(row))

    # ----- machines and audit -----

    async def list_machines(self, query: models.MachineQuery) -> list[answers.Machine]:
        async with self._pool.connection() as conn:
            found = await store_machines.list_machines(
                conn,
                limit=query.limit,
                offset=query.offset,
                **await _machine_filters(conn, query),
            )
        return [rows.machine(row) for row in found]

    async def count_machines(self, query: models.MachineQuery) -> int:
        """How many machines the query's filters select, every page together."""
        async with self._pool.connection() as conn:
            return await store_machines.count_machines(conn, **await _machine_filters(conn, query))

    async def admin_deactivate_machine(
        self, machine_id: str, reason: str | None
    ) -> answers.MachineDeactivated:
        async with self._pool.connection() as conn:
            row = await store_machines.machine_by_id(conn, machine_id)
        if row is None:
            raise NotFound(f"machine {machine_id}")
        if row["deactivated_at"] is not None:
            raise Conflict(f"machine {machine_id} is already deactivated")
        await self._validation._deactivate_machine(
            row["license_id"], machine_id, reason or "admin deactivate", audited=True
        )
        async with self._pool.connection() as conn:
            row = await store_machines.machine_by_id(conn, machine_id)
        return answers.MachineDeactivated(machine=rows.machine(row))

    async def audit_entries(self, query: models.AuditQuery) -> list[answers.AuditEntry]:
        async with self._pool.connection() as conn:
            found = await store.list_audit(
                conn, limit=query.limit, offset=query.offset, **_audit_filters(query)
            )
        return [rows.audit_entry(row) for row in found]

    async def count_audit(self, query: models.AuditQuery) -> int:
        """How many entries the query's filters select, every page together."""
        async with self._pool.connection() as conn:
            return await store.count_audit(conn, **_audit_filters(query))


async def _machine_filters(conn: Connection, query: models.MachineQuery) -> dict[str, Any]:
    """The store's filters of a machine query; NotFound for a product slug that names none."""
    product_id = query.product_id and str(uuid.UUID(query.product_id))
    if product_id is None and query.product_slug is not None:
        product = await store.product_by_slug(conn, query.product_slug)
        if product is None:
            raise NotFound(f"product '{query.product_slug}'")
        product_id = product["id"]
    state = "inactive" if query.only_inactive else "any" if query.include_inactive else "active"
    return {
        "license_id": query.license_id and str(uuid.UUID(query.license_id)),
        "product_id": product_id,
        "state": state,
    }


def _audit_filters(query: models.AuditQuery) -> dict[str, Any]:
    return {
        "action": query.action,
        "actor": query.actor,
        "subject": query.subject,
        "before_id": query.before_id,
    }


def free_reference(invoice_id: str) -> str:
    """Keysat's `btcpay_invoice_id` of a settled free invoice (no payment provider saw it)."""
    return f"free-{invoice_id}"


def _issue_metadata(
    source: events.IssueSource, terms: models.LicenseIssue, invoice_id: str | None
) -> dict[str, Any]:
    """The license metadata Keysat writes on issue (admin.rs issue_license, webhook.rs)."""
    if source == "admin_issue":
        return {"source": source, "note": terms.note}
    return {"source": source, "btcpay_invoice_id": invoice_id and free_reference(invoice_id)}


def _license_filters(query: models.LicenseQuery) -> dict[str, Any]:
    return {
        "product_id": query.product_id and str(uuid.UUID(query.product_id)),
        "status": query.status,
        "search": query.q,
        "buyer_email": query.buyer_email,
        "invoice_id": query.invoice_id and str(uuid.UUID(query.invoice_id)),
        "nostr_npub": query.nostr_npub,
    }
