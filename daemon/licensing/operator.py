"""What Keysat's admin API says about the shop itself: the operator's display name (shown
by `GET /`, edited with `/v1/admin/settings/operator-name`), the database's figures
(`/v1/admin/db-info`) and the issuer key brought from elsewhere (`import-issuer-key`).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from aiosqlite import Connection

from daemon.licensing import answers, keys, store
from daemon.licensing.core import Audit, Signer, now
from daemon.licensing.errors import BadRequest, Conflict
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


class Operator:
    def __init__(
        self, pool: Any, *, write_lock: asyncio.Lock, audit: Audit, signer: Signer
    ) -> None:
        self._pool = pool
        self._write_lock = write_lock
        self._audit = audit
        # Replaced by an imported key, for every use case that signs or verifies.
        self._signer = signer

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

    async def import_issuer_key(self, pem: str) -> answers.IssuerKeyImported:
        """Keysat's import: sign with this Ed25519 key from now on, only while no license
        exists (each one is signed with the key it was issued under). The old key is kept,
        retired. Unlike Keysat, no restart: the key is used from the next request on."""
        if "-----BEGIN" not in pem or "PRIVATE KEY-----" not in pem:
            raise BadRequest(
                "the body must be a PEM-encoded Ed25519 private key (BEGIN/END PRIVATE KEY); "
                "nothing was written"
            )
        try:
            issuer = keys.IssuerKey.from_pem(pem.strip())
        except ValueError as e:
            raise BadRequest(f"{e}; nothing was written") from None
        at = now()
        async with self._write_lock:
            async with self._pool.transaction() as conn:
                if await store.any_license(conn):
                    raise Conflict(
                        "licenses were already issued with the current issuer key; importing "
                        "another would make every one of them invalid, so nothing was written"
                    )
                await store.retire_issuer_key(conn, at)
                issuer_id = await store.insert_issuer_key(
                    conn, issuer.private_bytes(), issuer.public_bytes(), at
                )
                detail = {"public_key_pem": issuer.public_pem(), "retired": self._signer.issuer_id}
                await self._audit(conn, "issuer_key.import", f"issuer_key:{issuer_id}", detail, at)
            self._signer.use(issuer, issuer_id)
        return answers.IssuerKeyImported(public_key_pem=issuer.public_pem())

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
