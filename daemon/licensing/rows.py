"""Database rows as the layer's answers (`daemon.licensing.answers`), one function per kind.

Rows are `sqlite3.Row` with the columns of the matching `store` column list. A product's or
policy's free-form JSON that an older version or a hand edit left too deep or invalid is
answered with an empty value and one warning, so one row can never take a whole listing down.
"""

from __future__ import annotations

import functools
import json
import logging
from typing import Any

from daemon.licensing import answers, inputs
from daemon.licensing.state import iso_time
from daemon.licensing.store import Row

log = logging.getLogger("keysmith.licensing")

# Sats are 'BTC' in the price_currency columns (0010's default) and 'SAT' on the wire (Keysat).
SATS_STORED = "BTC"
SATS_SAID = "SAT"


def stored_currency(currency: str | None) -> str:
    return SATS_STORED if currency in (None, SATS_SAID) else currency


def said_currency(stored: str) -> str:
    return SATS_SAID if stored == SATS_STORED else stored


def product(row: Row) -> answers.Product:
    return answers.Product(
        id=row["id"],
        slug=row["slug"],
        name=row["name"],
        description=row["description"],
        price_sats=row["price_sats"],
        price_currency=said_currency(row["price_currency"]),
        price_value=row["price_minor"],
        metadata=_listed_json(row, "metadata", {}),
        entitlements_catalog=_listed_json(row, "entitlements_catalog", []),
        active=bool(row["active"]),
        created_at=iso_time(row["created_at"]),
        updated_at=iso_time(row["updated_at"]),
    )


def public_product(row: Row) -> answers.PublicProduct:
    return answers.PublicProduct(
        slug=row["slug"],
        name=row["name"],
        description=row["description"],
        base_price_sats=row["price_sats"],
        entitlements_catalog=_listed_json(row, "entitlements_catalog", []),
    )


def _public_fields(row: Row) -> dict[str, Any]:
    duration = row["duration_seconds"] or 0
    return {
        "slug": row["slug"],
        "name": row["name"],
        "description": row["description"],
        "price_sats": row["price_sats"],
        "duration_seconds": duration,
        "grace_seconds": row["grace_seconds"],
        "max_machines": row["max_machines"],
        "is_trial": bool(row["is_trial"]),
        "entitlements": json.loads(row["entitlements"]),
        "highlighted": bool(row["highlighted"]),
        "trial_days": duration // 86_400 if row["is_trial"] else 0,
    }


def public_policy(row: Row) -> answers.PublicPolicy:
    return answers.PublicPolicy(**_public_fields(row))


def policy(row: Row) -> answers.Policy:
    duration = row["duration_seconds"]
    return answers.Policy(
        **_public_fields(row),
        id=row["id"],
        product_id=row["product_id"],
        price_sats_override=row["price_sats"],
        duration_days=None if duration is None else -(-duration // 86_400),
        public=bool(row["is_public"]),
        active=bool(row["active"]),
        archived=not row["active"],
        sort_order=row["sort_order"],
        is_default=bool(row["is_default"]),
        price_currency=said_currency(row["price_currency"]),
        price_value=row["price_minor"],
        metadata=_listed_json(row, "metadata", {}, "policy"),
        created_at=iso_time(row["created_at"]),
    )


def license_(row: Row) -> answers.License:
    return answers.License(
        id=row["id"],
        product_id=row["product_id"],
        product_slug=row["product_slug"],
        policy_id=row["policy_id"],
        policy_slug=row["policy_slug"],
        invoice_id=row["invoice_id"],
        license_key=row["license_key"],
        status=row["status"],
        issued_at=iso_time(row["issued_at"]),
        expires_at=iso_time(row["expires_at"]),
        grace_seconds=row["grace_seconds"],
        fingerprint_bound=row["fingerprint_hash"] is not None,
        fingerprint_hash=row["fingerprint_hash"],
        note=row["note"],
        buyer_email=row["buyer_email"],
        revoked_at=iso_time(row["revoked_at"]),
        revocation_reason=row["revoke_reason"],
        suspended_at=iso_time(row["suspended_at"]),
        suspension_reason=row["suspend_reason"],
        is_trial=bool(row["is_trial"]),
        entitlements=json.loads(row["entitlements"]),
        max_machines=row["max_machines"],
    )


def code(row: Row) -> answers.Code:
    return answers.Code(
        id=row["id"],
        code=row["code"],
        kind=row["kind"],
        amount=row["amount"],  # a percent in basis points (store_sales.CODE_COLUMNS)
        applies_to_product_id=row["product_id"],
        product_slug=row["product_slug"],
        applies_to_policy_id=row["policy_id"],
        policy_slug=row["policy_slug"],
        applies_to_policy_ids=json.loads(row["policy_ids"]),
        max_uses=row["max_redemptions"],
        used_count=row["redemptions"],
        expires_at=iso_time(row["expires_at"]),
        active=not row["disabled"],
        description=row["note"],
        referrer_label=row["referrer_label"],
        created_at=iso_time(row["created_at"]),
    )


def redemption(row: Row) -> answers.Redemption:
    final, discount = row["amount_sats"], row["discount_sats"]
    return answers.Redemption(
        id=row["id"],
        code_id=row["code_id"],
        invoice_id=row["invoice_id"],
        license_id=row["license_id"],
        discount_applied_sats=discount,
        base_price_sats=None if final is None else final + discount,
        final_price_sats=final,
        buyer_email=row["buyer_email"],
        created_at=iso_time(row["redeemed_at"]),
        updated_at=iso_time(row["redeemed_at"]),
    )


def machine(row: Row) -> answers.Machine:
    return answers.Machine(
        id=row["id"],
        license_id=row["license_id"],
        fingerprint_hash=row["fingerprint"],
        hostname=row["hostname"],
        platform=row["platform"],
        first_seen_at=iso_time(row["first_seen_at"]),
        last_seen_at=iso_time(row["last_seen_at"]),
        active=row["deactivated_at"] is None,
        deactivated_at=iso_time(row["deactivated_at"]),
        deactivate_reason=row["deactivate_reason"],
    )


def audit_entry(row: Row) -> answers.AuditEntry:
    return answers.AuditEntry(
        id=row["id"],
        created_at=iso_time(row["created_at"]),
        actor=row["actor"],
        action=row["action"],
        subject=row["subject"],
        detail=json.loads(row["detail"]),
    )


def _listed_json(row: Row, column: str, fallback: Any, kind: str = "product") -> Any:
    try:
        return inputs.stored_json(row[column])
    except ValueError as e:
        _warn_unlistable(kind, row["id"], column, str(e), json.dumps(fallback))
        return fallback


# Once per row and reason, not once per listing: the public catalogue is polled by every client.
@functools.lru_cache(maxsize=1024)
def _warn_unlistable(kind: str, row_id: str, column: str, reason: str, fallback: str) -> None:
    log.warning(
        f"{kind} {row_id}: its stored {column} cannot be shown ({reason}); answered "
        f"{fallback} in its place. The row is unchanged; rewrite its {column} to valid JSON "
        f"within {inputs.MAX_JSON_DEPTH} levels to show it again",
        extra={f"{kind}_id": row_id, "column": column},
    )
