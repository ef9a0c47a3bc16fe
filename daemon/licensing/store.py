"""Every SQL statement of the licensing service, one small function each.

Functions take an open aiosqlite connection (rows are `sqlite3.Row`, as the pool sets) and
neither open transactions nor commit: the service decides what one transaction holds.
Times are integer unix seconds; ids are text UUIDs (the schema of migrations/0001..0011).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from aiosqlite import Connection

Row = sqlite3.Row

# ---------- issuer key and settings ----------


async def active_issuer_key(conn: Connection) -> Row | None:
    async with conn.execute("SELECT id, private_key FROM issuer_keys WHERE active = 1") as cursor:
        return await cursor.fetchone()


# The two statements that put a new issuer key in place, the old one kept but retired; also run
# by the Keysat import, whose one transaction is on a plain sqlite3 connection.
RETIRE_ISSUER_KEY = "UPDATE issuer_keys SET active = 0, retired_at = ? WHERE active = 1"
INSERT_ISSUER_KEY = (
    "INSERT INTO issuer_keys (private_key, public_key, created_at, active) VALUES (?, ?, ?, 1)"
)


async def retire_issuer_key(conn: Connection, now: int) -> None:
    await conn.execute(RETIRE_ISSUER_KEY, (now,))


async def any_license(conn: Connection) -> bool:
    async with conn.execute("SELECT EXISTS (SELECT 1 FROM licenses)") as cursor:
        row = await cursor.fetchone()
    return bool(row[0])


async def insert_issuer_key(conn: Connection, private: bytes, public: bytes, now: int) -> int:
    cursor = await conn.execute(INSERT_ISSUER_KEY, (private, public, now))
    return int(cursor.lastrowid)


async def get_setting(conn: Connection, key: str) -> str | None:
    async with conn.execute("SELECT value FROM settings WHERE key = ?", (key,)) as cursor:
        row = await cursor.fetchone()
    return None if row is None else row[0]


async def delete_setting(conn: Connection, key: str) -> None:
    await conn.execute("DELETE FROM settings WHERE key = ?", (key,))


async def put_setting(conn: Connection, key: str, value: str, now: int) -> None:
    await conn.execute(
        "INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        (key, value, now),
    )


# ---------- audit log ----------


async def audit(
    conn: Connection,
    *,
    actor: str,
    action: str,
    subject: str | None,
    detail: dict[str, Any],
    now: int,
) -> None:
    await conn.execute(
        "INSERT INTO audit_log (created_at, actor, action, subject, detail) VALUES (?, ?, ?, ?, ?)",
        (now, actor, action, subject, json.dumps(detail, sort_keys=True)),
    )


def _audit_filter(
    *, action: str | None, actor: str | None, subject: str | None, before_id: int | None
) -> tuple[str, tuple[Any, ...]]:
    """The WHERE of an audit query. An actor is a kind, or a kind and an identity
    (`api_key:<id>`): a kind finds both. `kind:` up to `kind;` (the next character) is every
    `kind:<identity>`, a range the index audit_log_actor_idx answers, where LIKE could not."""
    return where_clause(
        ("a.action = ?", action),
        (
            "(a.actor = ? OR (a.actor > ? AND a.actor < ?))",
            None if actor is None else (actor, f"{actor}:", f"{actor};"),
        ),
        ("a.subject = ?", subject),
        ("a.id < ?", before_id),
    )


async def list_audit(conn: Connection, *, limit: int, offset: int = 0, **filters: Any) -> list[Row]:
    """A page of the entries `_audit_filter(**filters)` selects, newest first, with the token
    hash of the API key an entry names (Keysat's actor_hash; never the token)."""
    where, params = _audit_filter(**filters)
    return await fetch_all(
        conn,
        "SELECT a.id, a.created_at, a.actor, a.action, a.subject, a.detail, "
        "k.token_hash AS actor_token_hash FROM audit_log AS a "
        "LEFT JOIN api_keys AS k ON a.actor > 'api_key:' AND a.actor < 'api_key;' "
        f"AND k.id = substr(a.actor, 9) {where} ORDER BY a.id DESC LIMIT ? OFFSET ?",
        (*params, limit, offset),
    )


async def count_audit(conn: Connection, **filters: Any) -> int:
    """How many entries `_audit_filter(**filters)` selects (every page together)."""
    return await count_of(conn, "FROM audit_log AS a", *_audit_filter(**filters))


# ---------- products ----------

PRODUCT_COLUMNS = (
    "id, slug, name, description, price_sats, metadata, active, created_at, updated_at, "
    "entitlements_catalog, price_currency, price_minor"
)


async def insert_product(conn: Connection, product: dict[str, Any]) -> None:
    await conn.execute(
        "INSERT INTO products (id, slug, name, description, price_sats, metadata, active, "
        "created_at, updated_at, entitlements_catalog, price_currency, price_minor) "
        "VALUES (:id, :slug, :name, :description, :price_sats, :metadata, 1, :now, :now, "
        ":entitlements_catalog, :price_currency, :price_minor)",
        product,
    )


async def product_by_slug(conn: Connection, slug: str) -> Row | None:
    return await fetch_one(conn, f"SELECT {PRODUCT_COLUMNS} FROM products WHERE slug = ?", (slug,))


async def product_by_id(conn: Connection, product_id: str) -> Row | None:
    return await fetch_one(
        conn, f"SELECT {PRODUCT_COLUMNS} FROM products WHERE id = ?", (product_id,)
    )


async def list_products(conn: Connection, *, active_only: bool) -> list[Row]:
    where = "WHERE active = 1" if active_only else ""
    return await fetch_all(
        conn, f"SELECT {PRODUCT_COLUMNS} FROM products {where} ORDER BY slug", ()
    )


async def set_product_active(conn: Connection, product_id: str, active: bool, now: int) -> int:
    cursor = await conn.execute(
        "UPDATE products SET active = ?, updated_at = ? WHERE id = ?",
        (int(active), now, product_id),
    )
    return cursor.rowcount


async def update_row(
    conn: Connection, table: str, row_id: str, values: dict[str, Any], now: int | None = None
) -> int:
    """Set `values` (column -> value, columns from this module's own lists) on one row."""
    if now is not None:
        values = {**values, "updated_at": now}
    if not values:
        return 1 if await fetch_one(conn, f"SELECT 1 FROM {table} WHERE id = ?", (row_id,)) else 0
    assignments = ", ".join(f"{column} = :{column}" for column in values)
    cursor = await conn.execute(
        f"UPDATE {table} SET {assignments} WHERE id = :row_id", {**values, "row_id": row_id}
    )
    return cursor.rowcount


async def delete_row(conn: Connection, table: str, row_id: str) -> int:
    """Delete one row; the schema's foreign keys refuse it while anything points at it."""
    cursor = await conn.execute(f"DELETE FROM {table} WHERE id = ?", (row_id,))
    return cursor.rowcount


# ---------- policies ----------

# A policy that follows its product's price (0018) is read at the product's current one.
_FOLLOWED = (
    "CASE WHEN price_follows_product = 1 THEN (SELECT {0} FROM products AS prod "
    "WHERE prod.id = policies.product_id) ELSE {0} END AS {0}"
)
POLICY_COLUMNS = (
    "id, product_id, slug, name, description, duration_seconds, grace_seconds, "
    "CASE WHEN unlimited_machines = 1 THEN 0 ELSE max_machines END AS max_machines, is_trial, "
    "entitlements, is_public, active, created_at, highlighted, sort_order, is_default, "
    "metadata, price_follows_product, updated_at, archived_at, "
    + ", ".join(_FOLLOWED.format(name) for name in ("price_sats", "price_currency", "price_minor"))
)


async def insert_policy(conn: Connection, policy: dict[str, Any]) -> None:
    await conn.execute(
        "INSERT INTO policies (id, product_id, slug, name, description, price_sats, "
        "duration_seconds, grace_seconds, max_machines, unlimited_machines, is_trial, "
        "entitlements, is_public, active, created_at, highlighted, sort_order, is_default, "
        "price_currency, price_minor, metadata, price_follows_product, updated_at) VALUES (:id, "
        ":product_id, :slug, :name, :description, :price_sats, :duration_seconds, "
        ":grace_seconds, :max_machines, :unlimited_machines, :is_trial, :entitlements, "
        ":is_public, 1, :now, :highlighted, :sort_order, :is_default, :price_currency, "
        ":price_minor, :metadata, :price_follows_product, :now)",
        policy,
    )


async def clear_default_policy(conn: Connection, product_id: str) -> None:
    await conn.execute(
        "UPDATE policies SET is_default = 0 WHERE product_id = ? AND is_default = 1",
        (product_id,),
    )


async def policy_by_id(conn: Connection, policy_id: str) -> Row | None:
    return await fetch_one(
        conn, f"SELECT {POLICY_COLUMNS} FROM policies WHERE id = ?", (policy_id,)
    )


async def policy_by_slug(conn: Connection, product_id: str, slug: str) -> Row | None:
    return await fetch_one(
        conn,
        f"SELECT {POLICY_COLUMNS} FROM policies WHERE product_id = ? AND slug = ?",
        (product_id, slug),
    )


async def default_policy(conn: Connection, product_id: str) -> Row | None:
    return await fetch_one(
        conn,
        f"SELECT {POLICY_COLUMNS} FROM policies "
        "WHERE product_id = ? AND is_default = 1 AND active = 1",
        (product_id,),
    )


async def list_policies(
    conn: Connection, product_id: str | None, *, public_only: bool, active_only: bool = False
) -> list[Row]:
    where, params = where_clause(("product_id = ?", product_id))
    if public_only:
        where += (" AND" if where else "WHERE") + " is_public = 1 AND active = 1"
    elif active_only:
        where += (" AND" if where else "WHERE") + " active = 1"
    return await fetch_all(
        conn,
        f"SELECT {POLICY_COLUMNS} FROM policies {where} ORDER BY product_id, sort_order, slug",
        params,
    )


async def set_policy_active(conn: Connection, policy_id: str, active: bool) -> int:
    cursor = await conn.execute(
        "UPDATE policies SET active = ? WHERE id = ?", (int(active), policy_id)
    )
    return cursor.rowcount


# ---------- licenses ----------

# A license's seat limit: its own override, else its policy's, else 1; 0 = unlimited.
SEATS = (
    "COALESCE(l.max_machines, CASE WHEN pol.unlimited_machines = 1 THEN 0 "
    "ELSE pol.max_machines END, 1)"
)
# Its grace after expiry: its own override, else its policy's, else none.
GRACE = "COALESCE(l.grace_seconds, pol.grace_seconds, 0)"
LICENSE_COLUMNS = (
    "l.id, l.product_id, p.slug AS product_slug, l.policy_id, pol.slug AS policy_slug, "
    "pol.name AS policy_name, "
    "l.license_key, l.status, l.issued_at, l.expires_at, l.fingerprint_hash, l.note, "
    "l.revoked_at, l.revoke_reason, l.suspended_at, l.suspend_reason, l.is_trial, "
    "l.fingerprint, l.bound_identity, l.metadata, l.nostr_npub, "
    f"l.entitlements, l.buyer_email, {GRACE} AS grace_seconds, {SEATS} AS max_machines, "
    # Keysat's invoice_id: the invoice that sold it (invoices_license_idx), None if issued.
    "(SELECT i.id FROM invoices AS i WHERE i.license_id = l.id ORDER BY i.created_at LIMIT 1) "
    "AS invoice_id"
)
LICENSE_FROM = (
    "FROM licenses AS l JOIN products AS p ON p.id = l.product_id "
    "LEFT JOIN policies AS pol ON pol.id = l.policy_id"
)


async def insert_license(conn: Connection, license_row: dict[str, Any]) -> None:
    await conn.execute(
        "INSERT INTO licenses (id, product_id, issuer_key_id, license_key, status, issued_at, "
        "expires_at, fingerprint_hash, note, policy_id, is_trial, entitlements, max_machines, "
        "grace_seconds, buyer_email, fingerprint, metadata, nostr_npub) VALUES (:id, "
        ":product_id, :issuer_key_id, :license_key, 'active', :issued_at, :expires_at, "
        ":fingerprint_hash, :note, :policy_id, :is_trial, :entitlements, :max_machines, "
        ":grace_seconds, :buyer_email, :fingerprint, :metadata, :nostr_npub)",
        license_row,
    )


async def license_by_id(conn: Connection, license_id: str) -> Row | None:
    return await fetch_one(
        conn, f"SELECT {LICENSE_COLUMNS} {LICENSE_FROM} WHERE l.id = ?", (license_id,)
    )


async def seat_limit_of(conn: Connection, license_id: str) -> Row | None:
    """The license's status and seat limit (its policy's max_machines, 1 without a policy)."""
    return await fetch_one(
        conn,
        f"SELECT l.status, {SEATS} AS max_machines FROM licenses AS l "
        "LEFT JOIN policies AS pol ON pol.id = l.policy_id WHERE l.id = ?",
        (license_id,),
    )


def _license_filter(
    *,
    product_id: str | None,
    status: str | None,
    search: str | None,
    buyer_email: str | None,
    invoice_id: str | None,
    nostr_npub: str | None,
) -> tuple[str, tuple[Any, ...]]:
    like = None if search is None else f"%{_escape_like(search)}%"
    return where_clause(
        ("l.product_id = ?", product_id),
        ("l.status = ?", status),
        (
            "(l.buyer_email = ? COLLATE NOCASE OR l.id IN (SELECT license_id FROM invoices "
            "WHERE buyer_email = ? COLLATE NOCASE))",
            None if buyer_email is None else (buyer_email, buyer_email),
        ),
        ("l.id IN (SELECT license_id FROM invoices WHERE id = ?)", invoice_id),
        ("l.nostr_npub = ?", nostr_npub),
        (
            "(l.id LIKE ? ESCAPE '\\' OR l.note LIKE ? ESCAPE '\\' OR l.license_key LIKE ? "
            "ESCAPE '\\' OR l.buyer_email LIKE ? ESCAPE '\\' OR l.id IN (SELECT license_id "
            "FROM invoices WHERE buyer_email LIKE ? ESCAPE '\\' OR id LIKE ? ESCAPE '\\'))",
            None if like is None else (like, like, like, like, like, like),
        ),
    )


async def list_licenses(conn: Connection, *, limit: int, offset: int, **filters: Any) -> list[Row]:
    """A page of the licenses `_license_filter(**filters)` selects, newest first."""
    where, params = _license_filter(**filters)
    return await fetch_all(
        conn,
        f"SELECT {LICENSE_COLUMNS} {LICENSE_FROM} {where} "
        "ORDER BY l.issued_at DESC, l.rowid DESC LIMIT ? OFFSET ?",
        (*params, limit, offset),
    )


async def count_licenses(conn: Connection, **filters: Any) -> int:
    """How many licenses `_license_filter(**filters)` selects (every page together)."""
    return await count_of(conn, "FROM licenses AS l", *_license_filter(**filters))


async def revoke_license(conn: Connection, license_id: str, reason: str | None, now: int) -> int:
    cursor = await conn.execute(
        "UPDATE licenses SET status = 'revoked', revoked_at = ?, revoke_reason = ? "
        "WHERE id = ? AND status <> 'revoked'",
        (now, reason, license_id),
    )
    return cursor.rowcount


async def suspend_license(conn: Connection, license_id: str, reason: str | None, now: int) -> int:
    cursor = await conn.execute(
        "UPDATE licenses SET status = 'suspended', suspended_at = ?, suspend_reason = ? "
        "WHERE id = ? AND status = 'active'",
        (now, reason, license_id),
    )
    return cursor.rowcount


async def unsuspend_license(conn: Connection, license_id: str) -> int:
    cursor = await conn.execute(
        "UPDATE licenses SET status = 'active', suspended_at = NULL, suspend_reason = NULL "
        "WHERE id = ? AND status = 'suspended'",
        (license_id,),
    )
    return cursor.rowcount


# ---------- helpers ----------


def where_clause(*pairs: tuple[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """`WHERE a AND b` over the pairs whose value is not None; a tuple value binds several."""
    clauses: list[str] = []
    params: list[Any] = []
    for clause, value in pairs:
        if value is None:
            continue
        clauses.append(clause)
        params.extend(value if isinstance(value, tuple) else (value,))
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", tuple(params)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def fetch_one(
    conn: Connection, sql: str, params: Sequence[Any] | dict[str, Any]
) -> Row | None:
    async with conn.execute(sql, params) as cursor:
        return await cursor.fetchone()


async def count_of(conn: Connection, source: str, where: str, params: Sequence[Any]) -> int:
    """The rows of `source` (`FROM ...`) that `where` selects, counted."""
    row = await fetch_one(conn, f"SELECT count(*) AS n {source} {where}", params)
    assert row is not None
    return int(row["n"])


async def fetch_all(conn: Connection, sql: str, params: Iterable[Any]) -> list[Row]:
    async with conn.execute(sql, tuple(params)) as cursor:
        return list(await cursor.fetchall())


async def product_in_use(conn: Connection, product_id: str) -> bool:
    row = await fetch_one(
        conn,
        "SELECT EXISTS (SELECT 1 FROM licenses WHERE product_id = ?1) "
        "OR EXISTS (SELECT 1 FROM invoices WHERE product_id = ?1) "
        "OR EXISTS (SELECT 1 FROM discount_codes WHERE product_id = ?1)",
        (product_id,),
    )
    return bool(row and row[0])


async def delete_policies_of(conn: Connection, product_id: str) -> int:
    cursor = await conn.execute("DELETE FROM policies WHERE product_id = ?", (product_id,))
    return cursor.rowcount


async def policy_in_use(conn: Connection, policy_id: str) -> bool:
    row = await fetch_one(
        conn,
        "SELECT EXISTS (SELECT 1 FROM licenses WHERE policy_id = ?1) "
        "OR EXISTS (SELECT 1 FROM invoices WHERE policy_id = ?1) "
        "OR EXISTS (SELECT 1 FROM discount_codes WHERE policy_id = ?1) "
        "OR EXISTS (SELECT 1 FROM discount_code_terms AS t, json_each(t.policy_ids) AS p "
        "WHERE p.value = ?1)",
        (policy_id,),
    )
    return bool(row and row[0])
