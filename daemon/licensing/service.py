"""The licensing service: one object holding every use case, for the API, the console and
the StartOS actions. The API calls this; this never calls the API.

Each use case is an object of its own module, built in `Licensing.__init__` (which `open`
calls once the keys are loaded) with what it needs passed in: the pool, the write lock, the
audit helper, the bounds it uses, the issuer key (`core.Signer`) and the use cases it calls.
Callers reach a method as `licensing.<use case>.<method>(...)`, the attribute named after
the module (`purchases` for `purchase`):

- `validation`: validate, activate, heartbeat, deactivate
- `catalogue`: public_products, public_product, public_policies, create_product,
  admin_products, update_product, set_product_active, delete_product, create_policy,
  admin_policies, update_policy, set_policy_active, set_policy_public, set_policy_archived,
  delete_policy
- `licenses`: issue_license, list_licenses, count_licenses, get_license, license_summary,
  revenue_summary, license_counts, revoke, suspend, unsuspend, list_machines,
  count_machines, admin_deactivate_machine, audit_entries, count_audit
- `codes`: create_code, list_codes, get_code, update_code, set_code_active, delete_code,
  code_exists, preview_code, redeem
- `purchases`: purchase, purchase_status, recover
- `access`: create_api_key, list_api_keys, revoke_api_key, scopes_of_token
- `outbox`: create_webhook_endpoint, webhook_secrets, list_webhook_endpoints,
  set_webhook_active, delete_webhook_endpoint, list_deliveries, count_deliveries, retry_delivery,
  announce_heals, claim_due, record_attempt, outbox_depth
- `operator`: operator_name, operator_name_info, set_operator_name, import_issuer_key, db_info
- `tiers`: change_tier

`Licensing` itself keeps only what is the service's as a whole: `admin_api_key`,
`admin_key_matches`, `public_key_pem`, `storage` and `close`. Requests are `models`, answers
are `answers`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
from typing import Any

from aiosqlite import Connection

from daemon import metrics
from daemon.licensing import keys, store
from daemon.licensing.access import ApiKeys
from daemon.licensing.catalogue import Catalogue
from daemon.licensing.codes import DISCOUNT_KINDS, Codes
from daemon.licensing.core import AdminActor, Audit, Limits, Signer, now, record
from daemon.licensing.licenses import Licenses
from daemon.licensing.operator import Operator
from daemon.licensing.outbox import Outbox
from daemon.licensing.purchase import NO_PAYMENT_PROVIDER, Purchases
from daemon.licensing.state import LicenseReader, VerifiedKeys
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


class Licensing:
    def __init__(
        self, pool: Any, signer: Signer, admin_api_key: str, limits: Limits, audit: Audit
    ) -> None:
        """Each use case with what it needs (`open` loads the keys first). One write lock
        serialises this process's writes; one reader serves validation's reads."""
        self._pool = pool
        self._signer = signer
        self._admin_key = admin_api_key.encode("utf-8")
        self._reader = LicenseReader(pool.path)
        lock = asyncio.Lock()
        self.validation = Validation(
            pool,
            write_lock=lock,
            audit=audit,
            reader=self._reader,
            verified=signer.verified,
            unlimited_seats=limits.unlimited_seats,
            machine_history=limits.machine_history,
        )
        self.catalogue = Catalogue(pool, write_lock=lock, audit=audit)
        self.licenses = Licenses(
            pool, write_lock=lock, audit=audit, signer=signer, validation=self.validation
        )
        self.purchases = Purchases(pool, write_lock=lock, licenses=self.licenses)
        self.codes = Codes(
            pool,
            write_lock=lock,
            audit=audit,
            purchases=self.purchases,
            wrong_codes_per_minute=limits.wrong_codes_per_minute,
            weak_code_days=limits.weak_code_days,
        )
        self.access = ApiKeys(pool, write_lock=lock, audit=audit)
        self.outbox = Outbox(
            pool,
            write_lock=lock,
            audit=audit,
            webhook_history=limits.webhook_history,
            webhook_networks=limits.webhook_allow_networks,
        )
        self.operator = Operator(pool, write_lock=lock, audit=audit, signer=signer)
        self.tiers = Tiers(pool, write_lock=lock, audit=audit, signer=signer)

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
        limits = limits or Limits()
        verified = VerifiedKeys(
            issuer.public, max_entries=limits.key_cache_entries, max_bytes=limits.key_cache_bytes
        )
        metrics.watch_key_cache(verified.stats)
        signer = Signer(issuer, issuer_id, verified)
        return cls(pool, signer, admin_key, limits, Audit(actor))

    @property
    def storage(self) -> StorageHealth:
        """How the pool's writes are faring, for /healthz."""
        return self._pool.health

    @property
    def public_key_pem(self) -> str:
        """The issuer's public key (an imported key's from the request after the import)."""
        return self._signer.public_key_pem

    @property
    def admin_api_key(self) -> str:
        """For the StartOS properties page and the log scrubber; never log it."""
        return self._admin_key.decode("utf-8")

    def admin_key_matches(self, presented: str) -> bool:
        """Constant-time comparison, so response timing says nothing about the key."""
        # surrogateescape: a header with non-UTF-8 bytes is simply a wrong key, not an error.
        return hmac.compare_digest(presented.encode("utf-8", "surrogateescape"), self._admin_key)

    def close(self) -> None:
        self._reader.close()


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
