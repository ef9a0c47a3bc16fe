"""A Keysat shop as Keysmith rows: each Keysat table mapped to the Keysmith table that holds
the same facts, in an order the foreign keys accept. Pure: reads rows, returns rows.

Names are Keysat's on the way in (`row`), Keysmith's on the way out (the returned dicts).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization

from daemon.keysat_import.errors import Refused
from daemon.keysat_import.values import Cell, Row
from daemon.licensing import keys

# Keysat's audit `actor_kind` -> Keysmith's actor; the kind itself stays in the entry's detail.
ACTORS = {
    "admin_api_key": "admin",
    "scoped_api_key": "admin",
    "web_ui": "admin",
    "buyer_license_key": "public",
    "buyer_self_service": "public",
}
PERPETUAL = 0  # Keysat's duration_seconds for "never expires"; a key's expires_at likewise


@dataclass
class Shop:
    """What the import writes: Keysmith table -> rows, in insert order; the issuer key; and
    what stayed behind (a description -> how many rows), for the summary."""

    issuer: keys.IssuerKey
    tables: dict[str, list[Row]] = field(default_factory=dict)
    left_behind: dict[str, int] = field(default_factory=dict)

    def skip(self, what: str, count: int = 1) -> None:
        if count:
            self.left_behind[what] = self.left_behind.get(what, 0) + count


def build(source: dict[str, list[Row]]) -> Shop:
    """Every Keysat table's rows (absent tables: empty) as a Shop. Raises Refused. Licenses
    get their `issuer_key_id` when the key is written."""
    shop = Shop(issuer=_issuer(source.get("server_keys", [])))
    products = {r["id"]: Cell("products", r) for r in source.get("products", [])}
    shop.tables["products"] = [_product(c) for c in products.values()]
    shop.tables["policies"] = [
        _policy(Cell("policies", r), products, shop) for r in source.get("policies", [])
    ]
    licenses = [Cell("licenses", r) for r in source.get("licenses", [])]
    shop.tables["licenses"] = [_license(c, shop) for c in licenses]
    shop.tables["machines"] = _machines(source.get("machines", []), shop)
    sold = {c.get("invoice_id"): c.row["id"] for c in licenses if c.get("invoice_id")}
    redeemed = _redemptions(source.get("discount_redemptions", []), shop)
    shop.tables["invoices"] = _invoices(source, sold, redeemed, shop)
    kept_invoices = {i["id"]: i for i in shop.tables["invoices"]}
    codes = [Cell("discount_codes", r) for r in source.get("discount_codes", [])]
    shop.tables["discount_codes"] = [_code(c) for c in codes]
    shop.tables["discount_code_terms"] = [_terms(c) for c in codes]
    shop.tables["discount_redemptions"] = [_redemption(c, kept_invoices) for c in redeemed.values()]
    shop.tables["settings"] = _settings(source.get("settings", []), shop)
    shop.tables["audit_log"] = [_audit(Cell("audit_log", r)) for r in source.get("audit_log", [])]
    return shop


def _issuer(rows: list[Row]) -> keys.IssuerKey:
    if not rows:
        raise Refused("the Keysat database has no issuer key (server_keys is empty)")
    cell = Cell("server_keys", rows[0])
    cell.choice("algorithm", ("ed25519",))
    try:
        issuer = keys.IssuerKey.from_pem(cell.row["private_key_pem"])
        public = serialization.load_pem_public_key(cell.row["public_key_pem"].encode())
    except (ValueError, TypeError, AttributeError):
        raise cell.refuse("private_key_pem", "is not an Ed25519 key pair in PEM") from None
    if keys.public_raw(public) != issuer.public_bytes():  # type: ignore[arg-type]
        raise cell.refuse("public_key_pem", "is not the public half of private_key_pem")
    return issuer


def _product(c: Cell) -> Row:
    created = c.required_time("created_at")
    return {
        "id": c.uuid_text("id"),
        "slug": c.get("slug"),
        "name": c.get("name"),
        "description": c.get("description") or "",
        "price_sats": c.count("price_sats"),
        "metadata": json.dumps(c.json("metadata_json", dict, "{}")),
        "active": c.flag("active", 1),
        "created_at": created,
        "updated_at": c.time("updated_at") or created,
        "entitlements_catalog": json.dumps(c.json("entitlements_catalog_json", list, "[]")),
        "price_currency": c.currency("price_currency"),
        "price_minor": c.count("price_value", c.get("price_sats", 0)),
    }


def _policy(c: Cell, products: dict[str, Cell], shop: Shop) -> Row:
    product = products.get(c.get("product_id"))
    if product is None:
        raise c.refuse("product_id", "names no product")
    metadata = c.json("metadata_json", dict, "{}")
    follows = c.get("price_sats_override") is None and c.get("price_value_override") is None
    seats = c.count("max_machines", 1)
    duration = c.count("duration_seconds")
    archived = c.get("archived_at") is not None
    shop.skip("policies archived in Keysat (imported inactive)", archived)
    shop.skip("policy Lightning tips (tip_recipient)", c.get("tip_recipient") is not None)
    shop.skip("recurring policies (imported as fixed-term tiers)", c.flag("is_recurring"))
    return {
        "id": c.get("id"),
        "product_id": c.get("product_id"),
        "slug": c.get("slug"),
        "name": c.get("name"),
        # Keysat keeps a tier's blurb and highlight in its metadata (its buy page reads them).
        "description": _text(metadata.get("description")),
        "price_sats": product.count("price_sats") if follows else c.count("price_sats_override"),
        "duration_seconds": None if duration == PERPETUAL else duration,
        "grace_seconds": c.count("grace_seconds"),
        "max_machines": max(seats, 1),
        "unlimited_machines": int(seats == 0),
        "is_trial": c.flag("is_trial"),
        "entitlements": json.dumps(c.slugs("entitlements_json")),
        "is_public": c.flag("public", 1),
        "active": int(c.flag("active", 1) == 1 and not archived),
        "created_at": c.required_time("created_at"),
        "highlighted": int(metadata.get("highlight") is True),
        "sort_order": c.get("tier_rank") or 0,
        "is_default": 0,
        "price_currency": _policy_currency(c, product, follows),
        "price_minor": _policy_minor(c, product, follows),
        "metadata": json.dumps(metadata),
        "price_follows_product": int(follows),
    }


def _policy_currency(c: Cell, product: Cell, follows: bool) -> str:
    if follows or c.get("price_currency_override") is None:
        return product.currency("price_currency")
    return c.currency("price_currency_override")


def _policy_minor(c: Cell, product: Cell, follows: bool) -> int:
    if follows:
        return product.count("price_value", product.get("price_sats", 0))
    if c.get("price_value_override") is not None:
        return c.count("price_value_override")
    return c.count("price_sats_override")


def _license(c: Cell, shop: Shop) -> Row:
    status = c.choice("status", ("active", "revoked", "suspended"))
    revoked_at = c.time("revoked_at")
    if (status == "revoked") != (revoked_at is not None):
        raise c.refuse("revoked_at", f"does not agree with the status {status!r}")
    issued_at, expires_at = c.required_time("issued_at"), c.time("expires_at")
    if expires_at is not None and expires_at <= issued_at:
        raise c.refuse("expires_at", "is not after issued_at")
    metadata = c.json("metadata_json", dict, "{}")
    fingerprint = c.get("fingerprint")
    return {
        "id": c.get("id"),
        "product_id": c.uuid_text("product_id"),
        "license_key": _key_of(c, shop.issuer, issued_at, expires_at),
        "status": status,
        "issued_at": issued_at,
        "expires_at": expires_at,
        "fingerprint_hash": None if fingerprint is None else _sha256(fingerprint),
        "fingerprint": fingerprint,
        "bound_identity": c.get("bound_identity"),
        "metadata": json.dumps(metadata),
        "nostr_npub": c.get("nostr_npub"),
        "note": _text(metadata.get("note")),
        "revoked_at": revoked_at,
        "revoke_reason": c.get("revocation_reason"),
        "suspended_at": c.time("suspended_at"),
        "suspend_reason": c.get("suspension_reason"),
        "policy_id": c.get("policy_id"),
        "is_trial": c.flag("is_trial"),
        "entitlements": json.dumps(c.slugs("entitlements_json")),
        "max_machines": c.count("max_machines", 1),
        "grace_seconds": c.count("grace_seconds"),
        "buyer_email": c.get("buyer_email"),
    }


def _key_of(c: Cell, issuer: keys.IssuerKey, issued_at: int, expires_at: int | None) -> str:
    """The license's key as Keysat derives it from the row (its recover and purchase-status
    routes re-sign it the same way): Ed25519 is deterministic, so this is the very string the
    buyer holds, unless Keysat changed the row's expiry or entitlements after issuing it.
    Either way the buyer's key validates: validation finds the license by the id it carries."""
    payload = keys.KeyPayload(
        product_id=c.uuid("product_id"),
        license_id=c.uuid("id"),
        issued_at=issued_at,
        expires_at=PERPETUAL if expires_at is None else expires_at,
        flags=keys.FLAG_TRIAL if c.flag("is_trial") else 0,
        entitlements=tuple(c.slugs("entitlements_json")),
    )
    try:
        return keys.issue_key(issuer, payload)
    except ValueError as e:
        raise c.refuse("entitlements_json", f"cannot be carried in a key: {e}") from None


def _machines(rows: Iterable[Row], shop: Shop) -> list[Row]:
    """Keysmith keeps one row per license and fingerprint (it reactivates that row); Keysat
    adds a row per activation. The active row wins, else the most recently seen one."""
    kept: dict[tuple[str, str], Row] = {}
    for row in rows:
        machine = _machine(Cell("machines", row))
        slot = (machine["license_id"], machine["fingerprint"])
        other = kept.get(slot)
        if other is None or _recency(machine) > _recency(other):
            kept[slot] = machine
        shop.skip("older deactivated rows of a re-activated machine", other is not None)
    return list(kept.values())


def _recency(machine: Row) -> tuple[bool, int]:
    return machine["deactivated_at"] is None, machine["last_seen_at"]


def _machine(c: Cell) -> Row:
    first = c.required_time("activated_at")
    fingerprint = c.get("fingerprint_hash")
    if not (isinstance(fingerprint, str) and len(fingerprint) == 64):
        raise c.refuse("fingerprint_hash", "is not a SHA-256 in hex")
    return {
        "id": c.get("id"),
        "license_id": c.get("license_id"),
        "fingerprint": fingerprint.lower(),
        "first_seen_at": first,
        "last_seen_at": max(c.time("last_heartbeat_at") or first, first),
        "hostname": c.get("hostname"),
        "platform": c.get("platform"),
        "deactivated_at": c.time("deactivated_at"),
        "deactivate_reason": c.get("deactivation_reason"),
    }


def _redemptions(rows: Iterable[Row], shop: Shop) -> dict[str, Cell]:
    """Keysat's redemptions that happened (status 'redeemed'), by invoice. A 'pending' one is
    a reservation for an unpaid invoice, a 'cancelled' one a reservation released."""
    redeemed = {}
    for row in rows:
        c = Cell("discount_redemptions", row)
        if c.choice("status", ("pending", "redeemed", "cancelled")) == "redeemed":
            redeemed[c.get("invoice_id")] = c
        else:
            shop.skip("discount reservations never redeemed (pending or cancelled)")
    return redeemed


def _invoices(
    source: dict[str, list[Row]], sold: dict[str, str], redeemed: dict[str, Cell], shop: Shop
) -> list[Row]:
    zaprite = {r["id"] for r in source.get("payment_providers", []) if r.get("kind") == "zaprite"}
    invoices = []
    for row in source.get("invoices", []):
        if row.get("payment_provider_id") in zaprite:
            shop.skip("Zaprite invoices (Keysmith records BTCPay and free sales)")
            continue
        invoices.append(_invoice(Cell("invoices", row), sold, redeemed))
    return invoices


def _invoice(c: Cell, sold: dict[str, str], redeemed: dict[str, Cell]) -> Row:
    status = c.choice("status", ("pending", "settled", "expired", "invalid"))
    reference = c.get("btcpay_invoice_id")
    free = isinstance(reference, str) and reference.startswith("free-")  # Keysat's free sales
    redemption = redeemed.get(c.get("id"))
    listed = c.get("listed_value")
    return {
        "id": c.get("id"),
        "product_id": c.get("product_id"),
        "license_id": sold.get(c.get("id")),
        "status": status,
        "provider": "free" if free else "btcpay",
        "provider_invoice_id": None if free else reference,
        "checkout_url": c.get("checkout_url") or None,
        "amount_sats": c.count("amount_sats"),
        "buyer_email": c.get("buyer_email"),
        "buyer_note": c.get("buyer_note"),
        "created_at": c.required_time("created_at"),
        # Keysat stamps the settlement as the row's last update.
        "settled_at": c.required_time("updated_at") if status == "settled" else None,
        "policy_id": c.get("policy_id"),
        "discount_sats": 0 if redemption is None else redemption.count("discount_applied_sats"),
        "amount_currency": c.currency("listed_currency") if listed is not None else "BTC",
        "amount_minor": c.count("listed_value") if listed is not None else c.count("amount_sats"),
    }


def _code(c: Cell) -> Row:
    kind = c.choice("kind", ("percent", "fixed_sats", "set_price", "free_license"))
    amount = c.count("amount")
    if kind in ("fixed_sats", "set_price") and c.currency("discount_currency") != "BTC":
        raise c.refuse("discount_currency", f"is not sats, which a {kind} code takes off")
    if kind == "percent" and amount > 10_000:
        raise c.refuse("amount", "is more than 10000 basis points (100 %)")
    max_uses = c.get("max_uses")
    if max_uses is not None and c.count("max_uses") < 1:
        raise c.refuse("max_uses", "is 0: a code that can never be used")
    return {
        "id": c.get("id"),
        "code": c.get("code"),
        "product_id": c.get("applies_to_product_id"),
        "policy_id": c.get("applies_to_policy_id") or _only_policy(c),
        "kind": kind,
        # Keysmith keeps a whole percent here (its CHECK) and the basis points in the terms.
        "amount": min(max(amount // 100, 1), 100) if kind == "percent" else amount,
        "max_redemptions": max_uses,
        "expires_at": c.time("expires_at"),
        "disabled": 1 - c.flag("active", 1),
        "note": c.get("description") or "",
        "created_at": c.required_time("created_at"),
    }


def _scope(c: Cell) -> list[str]:
    return c.slugs("applies_to_policy_ids_json") if c.get("applies_to_policy_ids_json") else []


def _only_policy(c: Cell) -> str | None:
    scope = _scope(c)
    return scope[0] if len(scope) == 1 else None


def _terms(c: Cell) -> Row:
    scope = _scope(c)
    return {
        "code_id": c.get("id"),
        "percent_bps": c.count("amount") if c.get("kind") == "percent" else None,
        "referrer_label": c.get("referrer_label"),
        "policy_ids": json.dumps(scope if len(scope) > 1 else []),
    }


def _redemption(c: Cell, invoices: dict[str, Row]) -> Row:
    invoice = invoices.get(c.get("invoice_id"))
    return {
        "id": c.get("id"),
        "code_id": c.get("code_id"),
        "invoice_id": None if invoice is None else invoice["id"],
        "license_id": c.get("license_id"),
        "buyer_email": None if invoice is None else invoice["buyer_email"],
        "redeemed_at": c.required_time("updated_at"),
    }


def _settings(rows: Iterable[Row], shop: Shop) -> list[Row]:
    kept = []
    for row in rows:
        c = Cell("settings", row)
        if c.get("key") == "operator_name" and c.get("value"):
            at = c.time("updated_at") or 0
            kept.append({"key": "operator_name", "value": c.get("value"), "updated_at": at})
        else:
            shop.skip("Keysat runtime settings other than the operator name")
    return kept


def _audit(c: Cell) -> Row:
    kind = c.get("actor_kind")
    target = (c.get("target_kind"), c.get("target_id"))
    detail = c.json("details_json", dict, "{}")
    detail["keysat"] = {
        name: c.get(name)
        for name in ("id", "actor_kind", "actor_hash", "request_ip", "user_agent")
        if c.get(name) is not None
    }
    return {
        "created_at": c.required_time("occurred_at"),
        "actor": ACTORS.get(kind, "system"),
        "action": c.get("action"),
        "subject": f"{target[0]}:{target[1]}" if all(target) else target[0],
        "detail": json.dumps(detail, sort_keys=True),
    }


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
