"""What Keysat's admin API says about the shop itself: the operator's display name (shown
by `GET /`, edited with `/v1/admin/settings/operator-name`) and the database's figures
(`/v1/admin/db-info`).
"""

from __future__ import annotations

import os
from typing import Any

from aiosqlite import Connection

from daemon.licensing import answers, store
from daemon.licensing.core import Core, now
from daemon.licensing.state import iso_time

OPERATOR_NAME = "operator_name"
# The rows `db-info` counts, in Keysat's names.
_COUNTS = {
    "products": "SELECT count(*) FROM products",
    "policies": "SELECT count(*) FROM policies",
    "licenses_total": "SELECT count(*) FROM licenses",
    "licenses_active": "SELECT count(*) FROM licenses WHERE status = 'active'",
    "invoices_total": "SELECT count(*) FROM invoices",
    "invoices_settled": "SELECT count(*) FROM invoices WHERE status = 'settled'",
    "machines_active": "SELECT count(*) FROM machines WHERE deactivated_at IS NULL",
    "discount_codes": "SELECT count(*) FROM discount_codes",
    "audit_log": "SELECT count(*) FROM audit_log",
}
_LAST_WRITE = (
    "SELECT max(t) FROM (SELECT max(created_at) AS t FROM audit_log "
    "UNION ALL SELECT max(created_at) FROM invoices UNION ALL SELECT max(issued_at) FROM licenses)"
)


class Operator(Core):
    async def operator_name(self) -> str | None:
        async with self._pool.connection() as conn:
            return await store.get_setting(conn, OPERATOR_NAME)

    async def operator_name_info(self) -> answers.OperatorName:
        stored = await self.operator_name()
        # Keysmith has no environment fallback (Keysat's KEYSAT_OPERATOR_NAME).
        return answers.OperatorName(stored=stored, effective=stored, fallback_env=None)

    async def set_operator_name(self, name: str) -> answers.OperatorNameSet:
        """Keysat: the name trimmed; an empty one clears it."""
        stored = name.strip() or None
        at = now()
        async with self._write_lock, self._pool.transaction() as conn:
            if stored is None:
                await store.delete_setting(conn, OPERATOR_NAME)
            else:
                await store.put_setting(conn, OPERATOR_NAME, stored, at)
            await self._audit(
                conn, "operator_name.set", f"setting:{OPERATOR_NAME}", {"value": stored}, at
            )
        return answers.OperatorNameSet(operator_name=stored)

    async def db_info(self) -> answers.DbInfo:
        async with self._pool.connection() as conn:
            counts = {name: await _scalar(conn, sql) for name, sql in _COUNTS.items()}
            last = await _scalar(conn, _LAST_WRITE)
            async with conn.execute("PRAGMA database_list") as cursor:
                path = next(row[2] for row in await cursor.fetchall() if row[1] == "main")
        try:
            size = os.stat(path).st_size
        except OSError:
            size = -1  # Keysat's answer when the file cannot be read
        return answers.DbInfo(
            db_path=path,
            db_size_bytes=size,
            last_write_at=iso_time(last),
            counts=answers.DbCounts(**counts),
        )


async def _scalar(conn: Connection, sql: str) -> Any:
    async with conn.execute(sql) as cursor:
        row = await cursor.fetchone()
    return row[0]
