"""Moving a license to another tier of its product (Keysat's admin change-tier). Without a
payment provider only Keysat's comp path exists (`skip_payment: true`): the license takes the
target policy's terms at once (entitlements, duration from now, trial flag; its seats and
grace follow the policy), and its key is signed again with them, the same license id and
issue time, so recovery and the purchase status hand out a key that says what the license is.
The key the buyer holds keeps validating (validation reads the license as it is now).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from daemon.licensing import answers, inputs, keys, models, store
from daemon.licensing.core import Audit, Signer, now
from daemon.licensing.errors import BadRequest, Conflict, NotFound
from daemon.licensing.store import Row

# A 400 naming the field, as Keysat refuses a change with nothing to charge: the 503 of a
# purchase is for the buyer's request, this is the operator's, who can send the other form.
NEEDS_PAYMENT = (
    "'skip_payment' must be true: a tier change that charges the buyer needs a payment "
    "provider, and none is configured; true applies it as a comp (no charge). Nothing was "
    "written"
)


class Tiers:
    def __init__(
        self, pool: Any, *, write_lock: asyncio.Lock, audit: Audit, signer: Signer
    ) -> None:
        self._pool = pool
        self._write_lock = write_lock
        self._audit = audit
        # Signs the license's key again under its new terms.
        self._signer = signer

    async def change_tier(self, license_id: str, request: models.TierChange) -> answers.TierChanged:
        if not request.skip_payment:
            raise BadRequest(NEEDS_PAYMENT)
        at = now()
        async with self._write_lock, self._pool.transaction() as conn:
            license = await store.license_by_id(conn, license_id)
            if license is None:
                raise NotFound(f"license {license_id}")
            if license["status"] == "revoked":
                raise Conflict(f"license {license_id} is revoked; nothing was written")
            target = await store.policy_by_slug(conn, license["product_id"], request.to_policy_slug)
            if target is None:
                raise NotFound(f"target policy '{request.to_policy_slug}'")
            values = self._terms_of(license, target, at)
            await store.update_row(conn, "licenses", license_id, values)
            tier_change_id = str(uuid.uuid4())
            detail = {
                "tier_change_id": tier_change_id,
                "from_policy_id": license["policy_id"],
                "to_policy_id": target["id"],
                "to_policy_slug": target["slug"],
                "reason": request.reason,
                "skip_payment": True,
            }
            await self._audit(conn, "license.change_tier.comp", f"license:{license_id}", detail, at)
        return answers.TierChanged(
            license_id=license_id,
            tier_change_id=tier_change_id,
            from_policy_slug=license["policy_slug"],
            to_policy_slug=target["slug"],
        )

    def _terms_of(self, license: Row, target: Row, at: int) -> dict[str, object]:
        """The license's columns under `target`, its key signed again with them."""
        entitlements = inputs.shown_json(
            "policy", target["id"], "entitlements", target["entitlements"], []
        )
        expires_at = at + target["duration_seconds"] if target["duration_seconds"] else None
        bound = license["fingerprint_hash"]
        flags = (keys.FLAG_TRIAL if target["is_trial"] else 0) | (
            keys.FLAG_FINGERPRINT_BOUND if bound else 0
        )
        payload = keys.KeyPayload(
            product_id=uuid.UUID(license["product_id"]),
            license_id=uuid.UUID(license["id"]),
            issued_at=license["issued_at"],
            expires_at=expires_at or 0,
            fingerprint_hash=bytes.fromhex(bound) if bound else keys.UNBOUND_FINGERPRINT,
            flags=flags,
            entitlements=tuple(entitlements),
        )
        return {
            "policy_id": target["id"],
            "entitlements": json.dumps(entitlements),
            "expires_at": expires_at,
            "is_trial": int(bool(target["is_trial"])),
            # The policy's seats and grace from now on, as Keysat copies them.
            "max_machines": None,
            "grace_seconds": None,
            "license_key": keys.issue_key(self._signer.issuer, payload),
            "issuer_key_id": self._signer.issuer_id,
        }
