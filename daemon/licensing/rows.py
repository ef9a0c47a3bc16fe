"""Database rows as the layer's answers (`daemon.licensing.answers`), one function per kind.

Rows are `sqlite3.Row` with the columns of the matching `store` column list. Every stored JSON
column is read through `inputs.shown_json`: one that an older version or a hand edit left too
deep, invalid or of the wrong kind is answered with an empty value and one warning, so one row
can never take a whole listing down.
"""

from __future__ import annotations

from typing import Any

from daemon.licensing import answers, inputs, integrations
from daemon.licensing.state import iso_time
from daemon.licensing.store import Row

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
        metadata=inputs.shown_json("product", row["id"], "metadata", row["metadata"], {}),
        entitlements_catalog=entitlements_catalog(row),
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
        entitlements_catalog=entitlements_catalog(row),
    )


def _public_fields(row: Row, metadata: dict[str, Any]) -> dict[str, Any]:
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
        "entitlements": inputs.shown_json(
            "policy", row["id"], "entitlements", row["entitlements"], []
        ),
        "highlighted": bool(row["highlighted"]),
        "marketing_bullets": _listed(metadata.get("marketing_bullets")),
        "marketing_bullets_position": (
            "below" if metadata.get("marketing_bullets_position") == "below" else "above"
        ),
        "hidden_entitlements": _listed(metadata.get("hidden_entitlements")),
        "trial_days": duration // 86_400 if row["is_trial"] else 0,
    }


def _policy_metadata(row: Row) -> dict[str, Any]:
    return inputs.shown_json("policy", row["id"], "metadata", row["metadata"], {})


def _listed(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def public_policy(row: Row) -> answers.PublicPolicy:
    """Keysat's buyer view: a `metadata.description` text and a `metadata.highlight` flag
    (how Keysat policies carry them) take the place of the policy's own columns."""
    metadata = _policy_metadata(row)
    fields = _public_fields(row, metadata)
    if isinstance(metadata.get("description"), str):
        fields["description"] = metadata["description"]
    if isinstance(metadata.get("highlight"), bool):
        fields["highlighted"] = metadata["highlight"]
    return answers.PublicPolicy(**fields)


def policy(row: Row) -> answers.Policy:
    duration = row["duration_seconds"]
    metadata = _policy_metadata(row)
    return answers.Policy(
        **_public_fields(row, metadata),
        id=row["id"],
        product_id=row["product_id"],
        price_sats_override=None if row["price_follows_product"] else row["price_sats"],
        duration_days=None if duration is None else -(-duration // 86_400),
        public=bool(row["is_public"]),
        active=bool(row["active"]),
        archived=not row["active"],
        archived_at=iso_time(row["archived_at"]),
        sort_order=row["sort_order"],
        is_default=bool(row["is_default"]),
        price_currency=said_currency(row["price_currency"]),
        price_value=row["price_minor"],
        metadata=metadata,
        created_at=iso_time(row["created_at"]),
        updated_at=iso_time(row["updated_at"]),
    )


def license_(row: Row) -> answers.License:
    return answers.License(
        id=row["id"],
        product_id=row["product_id"],
        product_slug=row["product_slug"],
        policy_id=row["policy_id"],
        policy_slug=row["policy_slug"],
        policy_name=row["policy_name"],
        invoice_id=row["invoice_id"],
        license_key=row["license_key"],
        status=row["status"],
        issued_at=iso_time(row["issued_at"]),
        expires_at=iso_time(row["expires_at"]),
        grace_seconds=row["grace_seconds"],
        fingerprint_bound=row["fingerprint_hash"] is not None,
        fingerprint_hash=row["fingerprint_hash"],
        fingerprint=row["fingerprint"],
        bound_identity=row["bound_identity"],
        metadata=inputs.shown_json("license", row["id"], "metadata", row["metadata"], {}),
        nostr_npub=row["nostr_npub"],
        note=row["note"],
        buyer_email=row["buyer_email"],
        revoked_at=iso_time(row["revoked_at"]),
        revocation_reason=row["revoke_reason"],
        suspended_at=iso_time(row["suspended_at"]),
        suspension_reason=row["suspend_reason"],
        is_trial=bool(row["is_trial"]),
        entitlements=inputs.shown_json(
            "license", row["id"], "entitlements", row["entitlements"], []
        ),
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
        applies_to_policy_ids=inputs.shown_json(
            "discount code", row["id"], "policy_ids", row["policy_ids"], []
        ),
        max_uses=row["max_redemptions"],
        used_count=row["redemptions"],
        expires_at=iso_time(row["expires_at"]),
        active=not row["disabled"],
        description=row["note"],
        referrer_label=row["referrer_label"],
        created_at=iso_time(row["created_at"]),
        updated_at=iso_time(row["updated_at"]),
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
    first_seen, last_seen = iso_time(row["first_seen_at"]), iso_time(row["last_seen_at"])
    return answers.Machine(
        id=row["id"],
        license_id=row["license_id"],
        fingerprint_hash=row["fingerprint"],
        hostname=row["hostname"],
        platform=row["platform"],
        first_seen_at=first_seen,
        last_seen_at=last_seen,
        active=row["deactivated_at"] is None,
        deactivated_at=iso_time(row["deactivated_at"]),
        deactivate_reason=row["deactivate_reason"],
        activated_at=first_seen,
        last_heartbeat_at=last_seen,
        deactivation_reason=row["deactivate_reason"],
        product_id=row["product_id"],
        product_slug=row["product_slug"],
        product_name=row["product_name"],
        buyer_email=row["buyer_email"],
        license_status=row["license_status"],
    )


MASTER_KEY = "master_key"
# Subject kinds Keysat names otherwise (its `target_kind`).
KEYSAT_TARGET_KINDS = {"webhook": "webhook_endpoint", "delivery": "webhook_delivery"}


def audit_entry(row: Row) -> answers.AuditEntry:
    """`row` has `store.list_audit`'s columns: the audit row and, for an API key's, the key's
    token hash (never the token)."""
    detail = inputs.shown_json("audit entry", row["id"], "detail", row["detail"], {})
    kind, _, identity = row["actor"].partition(":")
    target_kind, _, target_id = (row["subject"] or "").partition(":")
    at = iso_time(row["created_at"])
    return answers.AuditEntry(
        id=row["id"],
        created_at=at,
        # The master key is recorded with its hash, answered in actor_hash alone: `actor` says
        # `master_key`, as it did before the hash was recorded.
        actor=MASTER_KEY if kind == MASTER_KEY else row["actor"],
        action=row["action"],
        subject=row["subject"],
        detail=detail,
        actor_kind=kind,
        actor_hash=_actor_hash(kind, identity, row["actor_token_hash"]),
        target_kind=KEYSAT_TARGET_KINDS.get(target_kind, target_kind) or None,
        target_id=target_id or None,
        details=detail,
        occurred_at=at,
    )


def _actor_hash(kind: str, identity: str, token_hash: str | None) -> str | None:
    """Keysat's actor_hash: the SHA-256 of the credential, recorded with a master key's write
    (none before it was), the token hash of the API key named; none for other kinds."""
    if kind == MASTER_KEY:
        return identity or None
    return token_hash


def entitlements_catalog(row: Row) -> list[Any]:
    return inputs.shown_json(
        "product", row["id"], "entitlements_catalog", row["entitlements_catalog"], []
    )


def webhook_endpoint(row: Row) -> integrations.WebhookEndpoint:
    return integrations.WebhookEndpoint(
        id=row["id"],
        url=row["url"],
        event_types=_event_types(row),
        active=bool(row["enabled"]),
        description=row["description"],
        created_at=iso_time(row["created_at"]),
        updated_at=iso_time(row["updated_at"]),
        secret_prefix=row["secret"][:4],
    )


def _event_types(row: Row) -> list[str]:
    """An endpoint's stored event types; a row an older version or a hand edit broke is listed
    with none, which is what it hears (`outbox` reads the column with the same guard)."""
    return inputs.shown_names("webhook endpoint", row["id"], "event_types", row["event_types"])
