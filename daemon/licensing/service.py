"""The licensing service: one object with every use case, for the API, the console and the
StartOS actions. The API calls this; this never calls the API.

Each use case lives in its own module: `validation` (validate and seats), `catalogue`
(products and policies), `licenses` (issue, search, status, machines, audit), `codes`
(discount codes and redemption), `purchase` (free purchases and recovery), `access`
(scoped API keys), `outbox` (webhook endpoints, the outbox, the delivery log), `operator`
(the operator's name, the database's figures, an imported issuer key), `tiers` (a
license moved to another tier); `core` holds
what they share (pool, keys, write lock, the audit helper). Requests are `models`, answers
are `answers`.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from aiosqlite import Connection

from daemon import metrics
from daemon.licensing import keys, store
from daemon.licensing.access import ApiKeys
from daemon.licensing.catalogue import Catalogue
from daemon.licensing.codes import DISCOUNT_KINDS, Codes
from daemon.licensing.core import AdminActor, Limits, now, record
from daemon.licensing.licenses import Licenses
from daemon.licensing.operator import Operator
from daemon.licensing.outbox import Outbox
from daemon.licensing.purchase import NO_PAYMENT_PROVIDER, Purchases
from daemon.licensing.tiers import Tiers
from daemon.licensing.validation import Validation
from daemon.storage import StorageHealth

log = logging.getLogger("keysmith.licensing")

ADMIN_KEY_SETTING = "admin_api_key"
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


class Licensing(
    Validation, Catalogue, Licenses, Codes, Purchases, ApiKeys, Outbox, Operator, Tiers
):
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
        at = now()
        async with pool.transaction() as conn:
            row = await store.active_issuer_key(conn)
            if row is None:
                issuer = keys.IssuerKey.generate()
                issuer_id = await store.insert_issuer_key(
                    conn, issuer.private_bytes(), issuer.public_bytes(), at
                )
                await record(
                    conn,
                    "system",
                    "issuer_key.create",
                    f"issuer_key:{issuer_id}",
                    {"algorithm": "ed25519"},
                    at,
                )
                log.info(
                    "first boot: created the Ed25519 issuer key", extra={"issuer_key_id": issuer_id}
                )
            else:
                issuer = keys.IssuerKey.from_private_bytes(bytes(row["private_key"]))
                issuer_id = row["id"]
            admin_key = await _settle_admin_key(conn, admin_api_key, at)
        service = cls(pool, issuer, issuer_id, admin_key, limits or Limits(), actor=actor)
        metrics.watch_key_cache(service._verified.stats)
        return service

    @property
    def storage(self) -> StorageHealth:
        """How the pool's writes are faring, for /healthz."""
        return self._pool.health


async def _settle_admin_key(conn: Connection, given: str | None, at: int) -> str:
    stored = await store.get_setting(conn, ADMIN_KEY_SETTING)
    if given is not None:
        if stored is None or not secrets.compare_digest(stored.encode(), given.encode()):
            await store.put_setting(conn, ADMIN_KEY_SETTING, given, at)
            await _admin_key_set(conn, "environment", at)
        return given
    if stored is not None:
        return stored
    generated = secrets.token_urlsafe(32)
    await store.put_setting(conn, ADMIN_KEY_SETTING, generated, at)
    await _admin_key_set(conn, "generated", at)
    log.info(
        "first boot: generated an admin API key; it is stored in the database "
        "(settings.admin_api_key) and shown by the StartOS action, never in logs"
    )
    return generated


async def _admin_key_set(conn: Connection, source: str, at: int) -> None:
    await record(conn, "system", "admin_key.set", "setting:admin_api_key", {"source": source}, at)


__all__ = [
    "DISCOUNT_KINDS",
    "LICENSE_STATUSES",
    "NO_PAYMENT_PROVIDER",
    "REASONS",
    "AdminActor",
    "Licensing",
    "Limits",
]
