"""Every table and column of a Keysat database (migrations 1 to 25), and what the import does
with each table. A column or table outside these lists is one the import would not know the
meaning of, so it refuses the database rather than drop or misread it."""

from __future__ import annotations

from daemon.keysat_import.errors import Refused


def _known(names: str) -> frozenset[str]:
    return frozenset(names.split())


# Tables whose rows come over, with every column Keysat 0.2.0:63 gives them.
IMPORTED: dict[str, frozenset[str]] = {
    "server_keys": _known("id algorithm public_key_pem private_key_pem created_at"),
    "settings": _known("key value updated_at"),
    "products": _known(
        "id slug name description price_sats active metadata_json created_at updated_at "
        "price_currency price_value entitlements_catalog_json merchant_profile_id"
    ),
    "policies": _known(
        "id product_id name slug duration_seconds grace_seconds max_machines is_trial "
        "price_sats_override entitlements_json metadata_json active created_at updated_at "
        "tip_recipient tip_pct_bps tip_label public price_currency_override "
        "price_value_override is_recurring renewal_period_days grace_period_days trial_days "
        "tier_rank archived_at"
    ),
    "licenses": _known(
        "id product_id invoice_id status fingerprint bound_identity issued_at revoked_at "
        "revocation_reason metadata_json policy_id expires_at grace_seconds max_machines "
        "suspended_at suspension_reason entitlements_json is_trial nostr_npub buyer_email"
    ),
    "machines": _known(
        "id license_id fingerprint fingerprint_hash hostname platform ip_last_seen "
        "activated_at last_heartbeat_at deactivated_at deactivation_reason"
    ),
    "invoices": _known(
        "id btcpay_invoice_id product_id status buyer_email buyer_note amount_sats "
        "checkout_url created_at updated_at policy_id listed_currency listed_value "
        "exchange_rate_centibps exchange_rate_source payment_provider_id"
    ),
    "payment_providers": _known(
        "id merchant_profile_id kind label api_key base_url webhook_id webhook_secret "
        "store_id connected_at updated_at"
    ),
    "discount_codes": _known(
        "id code kind amount max_uses used_count expires_at applies_to_product_id "
        "applies_to_policy_id referrer_label description active created_at updated_at "
        "discount_currency featured applies_to_policy_ids_json"
    ),
    "discount_redemptions": _known(
        "id code_id invoice_id license_id status discount_applied_sats base_price_sats "
        "final_price_sats created_at updated_at"
    ),
    "audit_log": _known(
        "id actor_kind actor_hash action target_kind target_id request_ip user_agent "
        "details_json occurred_at"
    ),
}

# Keysat's tables that stay behind, and why (the summary says so).
LEFT_BEHIND: dict[str, str] = {
    "_sqlx_migrations": "Keysat's own migration ledger",
    "sqlite_sequence": "SQLite's counters",
    "validation_log": "validation requests, not shop data",
    "rate_buckets": "rate-limit counters",
    "sessions": "admin web sessions",
    "btcpay_authorize_state": "payment-connection handshakes",
    "btcpay_config": "payment-provider credentials (connect the provider to Keysmith anew)",
    "zaprite_config": "payment-provider credentials (connect the provider to Keysmith anew)",
    "merchant_profiles": "merchant profiles (Keysmith has one operator name)",
    "merchant_profile_rail_preferences": "payment rail preferences",
    "webhook_endpoints": "webhook endpoints (their secrets are Keysat's; add them anew)",
    "webhook_deliveries": "webhook delivery history",
    "scoped_api_keys": "API keys (only hashes are stored; create new keys in Keysmith)",
    "subscriptions": "recurring billing (Keysmith has none; licenses keep their expiry)",
    "subscription_invoices": "recurring billing cycles",
    "tier_changes": "tier-change history (the audit log keeps each change)",
    "tip_attempts": "Lightning tips",
}


def check_tables(tables: dict[str, list[str]], name: str) -> None:
    """Refuse a table or column the import does not know. `tables`: table -> its columns."""
    unknown = sorted(set(tables) - set(IMPORTED) - set(LEFT_BEHIND))
    if unknown:
        raise Refused(f"{name} has tables Keysat 0.2.0:63 does not have: {', '.join(unknown)}")
    for table, known in IMPORTED.items():
        extra = sorted(set(tables.get(table, ())) - known)
        if extra:
            raise Refused(
                f"{name}: the table {table} has columns Keysat 0.2.0:63 does not have: "
                f"{', '.join(extra)}"
            )
