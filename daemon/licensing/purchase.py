"""Purchases and recovery, for the purchases that need no payment provider.

A purchase whose price is 0 sats (a 0-sat tier, or a code that takes the whole price) is
settled at once: a local invoice (provider 'free') and the license in one transaction, so
`GET /v1/purchase/{invoice_id}` answers `settled` with the key and the published client's
`start_purchase`, `poll_purchase` and `wait_for_license` work. A purchase that costs sats
needs a payment provider; none is configured, so it is refused with that reason and nothing
is recorded. `recover` hands the key back to whoever knows the invoice id and its email.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiosqlite import Connection

from daemon.licensing import answers, events, models, outbox, rows, store, store_sales
from daemon.licensing.codes import (
    policy_of,
    price_after,
    product_and_policy,
    scoped_policy_id,
    unusable,
)
from daemon.licensing.core import now, record
from daemon.licensing.errors import BadRequest, NotFound, PaymentNotConfigured
from daemon.licensing.licenses import Licenses, free_reference
from daemon.licensing.store import Row

NO_PAYMENT_PROVIDER = (
    "no payment provider is configured on this Keysmith server, so purchases that cost sats "
    "are unavailable; nothing was charged or recorded. Ask the seller for a license key or a "
    "free-license code (POST /v1/redeem)."
)
# One answer for a wrong invoice id and a wrong email, so neither can be probed alone.
NOT_RECOVERABLE = "no license for that invoice id and buyer email"


class Purchases:
    def __init__(self, pool: Any, *, write_lock: asyncio.Lock, licenses: Licenses) -> None:
        self._pool = pool
        self._write_lock = write_lock
        # Issues the license a free purchase or a redemption settles.
        self._licenses = licenses

    async def purchase(self, request: models.PurchaseRequest) -> answers.Purchase:
        async with self._write_lock:
            at = now()
            async with self._pool.transaction() as conn:
                product, policy = await product_and_policy(
                    conn, request.product, request.policy_slug
                )
                code = None
                if request.code is not None:
                    code = await store_sales.code_by_text(conn, request.code)
                    if code is None:
                        raise BadRequest(f"'code': there is no discount code '{request.code}'")
                    if policy is None and scoped_policy_id(code) is not None:
                        policy = await policy_of(conn, product, scoped_policy_id(code))
                    policy_id = None if policy is None else policy["id"]
                    problem = unusable(code, product, policy_id, at)
                    if problem is not None:
                        raise BadRequest(f"'code': {problem.message}")
                base = (policy or product)["price_sats"]
                if price_after(code, base) > 0:
                    raise PaymentNotConfigured(NO_PAYMENT_PROVIDER)
                terms = models.LicenseIssue(
                    product_slug=product["slug"],
                    note="free purchase",
                    buyer_email=request.buyer_email,
                )
                issued = await self._settle_free(
                    conn, product, policy, code, terms, request.buyer_note, at, "license.purchase"
                )
        return answers.Purchase(
            invoice_id=issued["invoice_id"],
            btcpay_invoice_id=free_reference(issued["invoice_id"]),
            amount_sats=0,
            base_price_sats=base,
            discount_applied_sats=base,
            poll_url=f"/v1/purchase/{issued['invoice_id']}",
            status="settled",
            license_id=issued["license_id"],
            license_key=issued["license_key"],
        )

    async def _settle_free(
        self,
        conn: Connection,
        product: Row,
        policy: Row | None,
        code: Row | None,
        terms: models.LicenseIssue,
        buyer_note: str | None,
        at: int,
        action: str,
    ) -> dict[str, Any]:
        """License, settled 0-sat invoice and (with a code) its redemption, one transaction."""
        invoice_id = str(uuid.uuid4())
        price = (policy or product)["price_sats"]
        license_row = await self._licenses._insert_license(
            conn, product, policy, terms, at, source="purchase", invoice_id=invoice_id
        )
        await store_sales.insert_free_invoice(
            conn,
            {
                "id": invoice_id,
                "product_id": product["id"],
                "license_id": license_row["id"],
                "buyer_email": terms.buyer_email,
                "buyer_note": buyer_note,
                "now": at,
                "policy_id": None if policy is None else policy["id"],
                "discount_sats": price,
            },
        )
        redemption_id = None
        if code is not None:
            redemption_id = str(uuid.uuid4())
            await store_sales.insert_redemption(
                conn,
                {
                    "id": redemption_id,
                    "code_id": code["id"],
                    "invoice_id": invoice_id,
                    "license_id": license_row["id"],
                    "buyer_email": terms.buyer_email,
                    "now": at,
                },
            )
            redeemed = events.CodeRedeemed(
                redemption_id=redemption_id,
                code_id=code["id"],
                code=code["code"],
                license_id=license_row["id"],
                product_id=product["id"],
                invoice_id=invoice_id,
                discount_applied_sats=price,
                base_price_sats=price,
                final_price_sats=0,
            )
            await outbox.emit(conn, "code.redeemed", redeemed, at)
        detail = {"invoice_id": invoice_id, "code_id": None if code is None else code["id"]}
        await record(conn, "public", action, f"license:{license_row['id']}", detail, at)
        return {
            "license_id": license_row["id"],
            "license_key": license_row["license_key"],
            "invoice_id": invoice_id,
            "redemption_id": redemption_id,
        }

    async def purchase_status(self, invoice_id: str) -> answers.PurchaseStatus:
        async with self._pool.connection() as conn:
            row = await store_sales.invoice_by_id(conn, invoice_id)
        if row is None:
            raise NotFound(f"invoice {invoice_id}")
        return answers.PurchaseStatus(
            invoice_id=row["id"],
            status=row["status"],
            product_id=row["product_id"],
            amount_sats=row["amount_sats"],
            license_id=row["license_id"],
            license_key=row["license_key"],
        )

    async def recover(self, request: models.RecoverRequest) -> answers.Recovered:
        invoice_id = str(uuid.UUID(request.invoice_id))
        given = request.email or ""
        async with self._pool.connection() as conn:
            row = await store_sales.invoice_by_id(conn, invoice_id)
            email = None if row is None else row["buyer_email"]
            if (
                row is None
                or row["license_key"] is None
                or email is None
                or email.casefold() != given.casefold()
            ):
                raise NotFound(NOT_RECOVERABLE)
            license_row = await store.license_by_id(conn, row["license_id"])
        license = rows.license_(license_row)
        return answers.Recovered(
            invoice_id=invoice_id,
            license_id=license.id,
            license_key=license.license_key,
            product_id=license.product_id,
            product_slug=license.product_slug,
            issued_at=license.issued_at,
            expires_at=license.expires_at,
            entitlements=license.entitlements,
        )
