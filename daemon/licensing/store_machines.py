"""The SQL of machines (the seats licenses are activated on), one function each.

Same rules as `daemon.licensing.store`: functions take an open connection and never commit.
"""

from __future__ import annotations

from typing import Any, Literal

from aiosqlite import Connection

from daemon.licensing.store import Row, count_of, fetch_all, fetch_one, where_clause

MACHINE_COLUMNS = (
    "id, license_id, fingerprint, hostname, platform, first_seen_at, last_seen_at, "
    "deactivated_at, deactivate_reason"
)
# What the admin answers add, as Keysat's list does: the license's product, buyer and status.
LISTED_COLUMNS = (
    "m.id, m.license_id, m.fingerprint, m.hostname, m.platform, m.first_seen_at, "
    "m.last_seen_at, m.deactivated_at, m.deactivate_reason, l.product_id, "
    "p.slug AS product_slug, p.name AS product_name, l.buyer_email, l.status AS license_status"
)
LISTED_FROM = (
    "FROM machines AS m JOIN licenses AS l ON l.id = m.license_id "
    "JOIN products AS p ON p.id = l.product_id"
)


# Counted on the index machines_license_state_idx (0012) alone, never reading the table
# (tests/test_machine_bounds.py holds the query plan to that).
ACTIVE_SEATS_SQL = "SELECT count(*) FROM machines WHERE license_id = ? AND deactivated_at IS NULL"


async def active_seats(conn: Connection, license_id: str) -> int:
    row = await fetch_one(conn, ACTIVE_SEATS_SQL, (license_id,))
    assert row is not None
    return int(row[0])


# Keeps the `keep` most recently deactivated machines of one license; the same index finds
# them without a scan of the table.
PURGE_HISTORY_SQL = (
    "DELETE FROM machines WHERE license_id = ?1 AND deactivated_at IS NOT NULL AND id NOT IN "
    "(SELECT id FROM machines WHERE license_id = ?1 AND deactivated_at IS NOT NULL "
    "ORDER BY deactivated_at DESC, id DESC LIMIT ?2)"
)


async def purge_machine_history(conn: Connection, license_id: str, *, keep: int) -> int:
    """Delete the license's deactivated machines beyond the `keep` most recent ones."""
    cursor = await conn.execute(PURGE_HISTORY_SQL, (license_id, keep))
    return cursor.rowcount


async def machine_by_fingerprint(conn: Connection, license_id: str, fingerprint: str) -> Row | None:
    return await fetch_one(
        conn,
        f"SELECT {MACHINE_COLUMNS} FROM machines WHERE license_id = ? AND fingerprint = ?",
        (license_id, fingerprint),
    )


async def machine_by_id(conn: Connection, machine_id: str) -> Row | None:
    return await fetch_one(
        conn, f"SELECT {LISTED_COLUMNS} {LISTED_FROM} WHERE m.id = ?", (machine_id,)
    )


async def insert_machine(conn: Connection, machine: dict[str, Any]) -> None:
    await conn.execute(
        "INSERT INTO machines (id, license_id, fingerprint, hostname, platform, first_seen_at, "
        "last_seen_at) VALUES (:id, :license_id, :fingerprint, :hostname, :platform, :now, :now)",
        machine,
    )


async def reactivate_machine(
    conn: Connection, machine_id: str, hostname: str | None, platform: str | None, now: int
) -> None:
    await conn.execute(
        "UPDATE machines SET deactivated_at = NULL, deactivate_reason = NULL, last_seen_at = ?, "
        "hostname = COALESCE(?, hostname), platform = COALESCE(?, platform) WHERE id = ?",
        (now, hostname, platform, machine_id),
    )


async def touch_machine(conn: Connection, machine_id: str, now: int) -> None:
    await conn.execute(
        "UPDATE machines SET last_seen_at = max(last_seen_at, ?) WHERE id = ?", (now, machine_id)
    )


async def deactivate_machine(conn: Connection, machine_id: str, reason: str, now: int) -> int:
    cursor = await conn.execute(
        "UPDATE machines SET deactivated_at = max(last_seen_at, ?), deactivate_reason = ? "
        "WHERE id = ? AND deactivated_at IS NULL",
        (now, reason, machine_id),
    )
    return cursor.rowcount


# Which machines a list shows: the active ones (Keysat's default), the deactivated ones, or both.
MachineState = Literal["active", "inactive", "any"]


def _machine_filter(
    *, license_id: str | None, product_id: str | None, state: MachineState
) -> tuple[str, tuple[Any, ...]]:
    # An empty tuple binds nothing but keeps the clause (where_clause drops only None).
    return where_clause(
        ("m.license_id = ?", license_id),
        ("l.product_id = ?", product_id),
        ("m.deactivated_at IS NULL", () if state == "active" else None),
        ("m.deactivated_at IS NOT NULL", () if state == "inactive" else None),
    )


async def list_machines(
    conn: Connection, *, limit: int, offset: int = 0, **filters: Any
) -> list[Row]:
    """A page of the machines `_machine_filter(**filters)` selects, last seen first."""
    where, params = _machine_filter(**filters)
    return await fetch_all(
        conn,
        f"SELECT {LISTED_COLUMNS} {LISTED_FROM} {where} "
        "ORDER BY m.last_seen_at DESC, m.id LIMIT ? OFFSET ?",
        (*params, limit, offset),
    )


async def count_machines(conn: Connection, **filters: Any) -> int:
    """How many machines `_machine_filter(**filters)` selects (every page together)."""
    where, params = _machine_filter(**filters)
    # The license is joined only for a product filter: without it, an index answers alone.
    joined = "JOIN licenses AS l ON l.id = m.license_id" if filters["product_id"] else ""
    return await count_of(conn, f"FROM machines AS m {joined}", where, params)
