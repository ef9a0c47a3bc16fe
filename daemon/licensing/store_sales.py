"""The SQL of discount codes, invoices and redemptions (the sales side), one function each.

Same rules as `daemon.licensing.store`: functions take an open connection and never commit.
"""

from __future__ import annotations

from typing import Any

from aiosqlite import Connection

from daemon.licensing.store import Row, fetch_all, fetch_one, where_clause

# ---------- discount codes, invoices, redemptions ----------

# A percent code's amount is read in basis points: its terms row (0016), else the whole
# percent of discount_codes.amount. A code without terms has no label and its one policy.
CODE_COLUMNS = (
    "c.id, c.code, c.product_id, p.slug AS product_slug, p.price_sats AS product_price_sats, "
    "c.policy_id, pol.slug AS policy_slug, "
    "c.kind, CASE WHEN c.kind = 'percent' THEN coalesce(t.percent_bps, c.amount * 100) "
    "ELSE c.amount END AS amount, c.max_redemptions, c.expires_at, c.disabled, c.note, "
    "c.created_at, coalesce(t.updated_at, c.created_at) AS updated_at, t.referrer_label, "
    "coalesce(t.policy_ids, '[]') AS policy_ids, "
    "(SELECT count(*) FROM discount_redemptions AS r WHERE r.code_id = c.id) AS redemptions"
)
CODE_FROM = (
    "FROM discount_codes AS c LEFT JOIN products AS p ON p.id = c.product_id "
    "LEFT JOIN policies AS pol ON pol.id = c.policy_id "
    "LEFT JOIN discount_code_terms AS t ON t.code_id = c.id"
)


async def insert_code(conn: Connection, code: dict[str, Any]) -> None:
    await conn.execute(
        "INSERT INTO discount_codes (id, code, product_id, policy_id, kind, amount, "
        "max_redemptions, expires_at, disabled, note, created_at) VALUES (:id, :code, "
        ":product_id, :policy_id, :kind, :amount, :max_redemptions, :expires_at, 0, :note, :now)",
        code,
    )
    await put_code_terms(conn, code)


async def put_code_terms(conn: Connection, code: dict[str, Any]) -> None:
    """The code's Keysat terms (`percent_bps`, `referrer_label`, `policy_ids` as JSON) and
    when the code was last written (`now`)."""
    await conn.execute(
        "INSERT INTO discount_code_terms (code_id, percent_bps, referrer_label, policy_ids, "
        "updated_at) VALUES (:id, :percent_bps, :referrer_label, :policy_ids, :now) "
        "ON CONFLICT (code_id) DO UPDATE SET percent_bps = excluded.percent_bps, "
        "referrer_label = excluded.referrer_label, policy_ids = excluded.policy_ids, "
        "updated_at = excluded.updated_at",
        code,
    )


async def code_by_id(conn: Connection, code_id: str) -> Row | None:
    return await fetch_one(conn, f"SELECT {CODE_COLUMNS} {CODE_FROM} WHERE c.id = ?", (code_id,))


async def code_by_text(conn: Connection, code: str) -> Row | None:
    # The column is COLLATE NOCASE, so codes match case-insensitively, as buyers type them.
    return await fetch_one(conn, f"SELECT {CODE_COLUMNS} {CODE_FROM} WHERE c.code = ?", (code,))


async def list_codes(
    conn: Connection, *, product_id: str | None, include_inactive: bool
) -> list[Row]:
    where, params = where_clause(
        ("c.product_id = ?", product_id), ("c.disabled = ?", None if include_inactive else 0)
    )
    return await fetch_all(
        conn, f"SELECT {CODE_COLUMNS} {CODE_FROM} {where} ORDER BY c.created_at, c.code", params
    )


async def insert_free_invoice(conn: Connection, invoice: dict[str, Any]) -> None:
    """A settled invoice of a purchase that cost nothing (a 0-sat tier, a 100%-off code)."""
    await conn.execute(
        "INSERT INTO invoices (id, product_id, license_id, status, provider, amount_sats, "
        "buyer_email, buyer_note, created_at, settled_at, policy_id, discount_sats) VALUES (:id, "
        ":product_id, :license_id, 'settled', 'free', 0, :buyer_email, :buyer_note, :now, :now, "
        ":policy_id, :discount_sats)",
        invoice,
    )


async def insert_redemption(conn: Connection, redemption: dict[str, Any]) -> None:
    await conn.execute(
        "INSERT INTO discount_redemptions (id, code_id, invoice_id, license_id, buyer_email, "
        "redeemed_at) VALUES (:id, :code_id, :invoice_id, :license_id, :buyer_email, :now)",
        redemption,
    )


async def delete_code(conn: Connection, code_id: str) -> int:
    """Only a code never redeemed: redemptions point at their code (foreign key)."""
    cursor = await conn.execute(
        "DELETE FROM discount_codes WHERE id = ? AND NOT EXISTS "
        "(SELECT 1 FROM discount_redemptions WHERE code_id = ?)",
        (code_id, code_id),
    )
    if cursor.rowcount:
        await conn.execute("DELETE FROM discount_code_terms WHERE code_id = ?", (code_id,))
    return cursor.rowcount


async def redemptions_of(conn: Connection, code_id: str) -> list[Row]:
    return await fetch_all(
        conn,
        "SELECT r.id, r.code_id, r.invoice_id, r.license_id, r.buyer_email, r.redeemed_at, "
        "i.amount_sats, i.discount_sats FROM discount_redemptions AS r "
        "LEFT JOIN invoices AS i ON i.id = r.invoice_id "
        "WHERE r.code_id = ? ORDER BY r.redeemed_at, r.id",
        (code_id,),
    )


INVOICE_COLUMNS = (
    "i.id, i.product_id, i.status, i.amount_sats, i.buyer_email, i.license_id, "
    "l.license_key, p.slug AS product_slug"
)
INVOICE_FROM = (
    "FROM invoices AS i JOIN products AS p ON p.id = i.product_id "
    "LEFT JOIN licenses AS l ON l.id = i.license_id"
)


async def invoice_by_id(conn: Connection, invoice_id: str) -> Row | None:
    return await fetch_one(
        conn, f"SELECT {INVOICE_COLUMNS} {INVOICE_FROM} WHERE i.id = ?", (invoice_id,)
    )


async def license_summary(conn: Connection, now: int) -> Row:
    row = await fetch_one(
        conn,
        "SELECT count(*) AS total, "
        "count(*) FILTER (WHERE status = 'active') AS active, "
        "count(*) FILTER (WHERE status = 'suspended') AS suspended, "
        "count(*) FILTER (WHERE status = 'revoked') AS revoked, "
        "count(*) FILTER (WHERE issued_at >= ?1 - 86400) AS last_24h, "
        "count(*) FILTER (WHERE issued_at >= ?1 - 7 * 86400) AS last_7d FROM licenses",
        (now,),
    )
    assert row is not None
    return row


async def license_counts(conn: Connection) -> tuple[list[Row], list[Row]]:
    """(product_id, n) and (policy_id, n) over every license."""
    by_product = await fetch_all(
        conn, "SELECT product_id, count(*) FROM licenses GROUP BY product_id", ()
    )
    by_policy = await fetch_all(
        conn,
        "SELECT policy_id, count(*) FROM licenses WHERE policy_id IS NOT NULL GROUP BY policy_id",
        (),
    )
    return by_product, by_policy


async def revenue_summary(conn: Connection, now: int) -> Row:
    row = await fetch_one(
        conn,
        "SELECT coalesce(sum(amount_sats), 0) AS total_sats, "
        "coalesce(sum(amount_sats) FILTER (WHERE settled_at >= ?1 - 86400), 0) AS last_24h_sats, "
        "coalesce(sum(amount_sats) FILTER (WHERE settled_at >= ?1 - 7 * 86400), 0) "
        "AS last_7d_sats, "
        "coalesce(sum(amount_sats) FILTER (WHERE settled_at >= ?1 - 30 * 86400), 0) "
        "AS last_30d_sats, "
        "count(*) FILTER (WHERE amount_sats > 0) AS settled_paid_invoice_count "
        "FROM invoices WHERE status = 'settled'",
        (now,),
    )
    assert row is not None
    return row
