"""Scoped API keys, in Keysat's shapes: a key has a role and optional extra scopes; every admin
route needs one scope, `<resource>:read` or `<resource>:write` (declared in `daemon.api.table`).

The token is shown once, on create; only its SHA-256 is stored, so the database cannot give it
back. A token is high-entropy (32 random bytes), so a plain hash (no salt, no stretching) is
enough, and it lets the key be found by an index. Revocation writes `revoked_at`; every
request reads the key again, so a revoked key is refused from the next request on. Only the
master admin key manages API keys (the routes' scope is `MASTER`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import uuid
from typing import Literal, get_args

import msgspec
from aiosqlite import Connection

from daemon.licensing import answers, models
from daemon.licensing.core import Core, now
from daemon.licensing.errors import BadRequest, NotFound
from daemon.licensing.models import Role
from daemon.licensing.state import iso_time
from daemon.licensing.store import Row

Access = Literal["read", "write"]
# The resources of the admin routes: the first path segment after /v1/admin/.
RESOURCES = (
    "products",
    "policies",
    "licenses",
    "revenue",
    "discount-codes",
    "machines",
    "audit",
    "webhooks",
)
SCOPES = tuple(f"{r}:{a}" for r in RESOURCES for a in get_args(Access))
# Only the master admin key: managing API keys (a key must not mint itself more rights).
MASTER = "master"
TOKEN_PREFIX = "ksk_"

READS = frozenset(s for s in SCOPES if s.endswith(":read"))
# Keysat's four roles; extra scopes add to a role, never remove.
ROLE_SCOPES: dict[Role, frozenset[str]] = {
    # Dashboards and reports: every read, no write.
    "read-only": READS,
    # A shop that sells: issue and manage licenses and their machines, read the catalogue.
    "license-issuer": frozenset(
        {
            "licenses:read",
            "licenses:write",
            "machines:read",
            "machines:write",
            "products:read",
            "policies:read",
            "discount-codes:read",
        }
    ),
    # A support desk: read everything, suspend / revoke licenses and free machines.
    "support": READS | {"licenses:write", "machines:write"},
    # Everything but managing API keys.
    "full-admin": frozenset(SCOPES),
}


def scope_of(method: str, path: str) -> str:
    """The scope an admin route needs: its resource, read for GET, write otherwise."""
    resource = path.removeprefix("/v1/admin/").split("/", 1)[0]
    if resource in ("webhook-endpoints", "webhook-deliveries"):
        resource = "webhooks"
    if resource not in RESOURCES:
        raise ValueError(f"admin route {method} {path}: resource '{resource}' has no scope")
    return f"{resource}:{'read' if method == 'GET' else 'write'}"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def _api_key(row: Row) -> answers.ApiKey:
    return answers.ApiKey(
        id=row["id"],
        label=row["label"],
        role=row["role"],
        scopes=json.loads(row["scopes"]),
        token_prefix=row["token_prefix"],
        created_at=iso_time(row["created_at"]),
        revoked_at=iso_time(row["revoked_at"]),
    )


class ApiKeys(Core):
    async def create_api_key(self, request: models.ApiKeyCreate) -> answers.ApiKeyCreated:
        extra = sorted(set(request.scopes or ()))
        unknown = [s for s in extra if s not in SCOPES]
        if unknown:
            raise BadRequest(f"'scopes': unknown scope {unknown[0]!r}; known: {', '.join(SCOPES)}")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = {
            "id": str(uuid.uuid4()),
            "label": request.label,
            "role": request.role,
            "scopes": json.dumps(extra),
            "token_hash": token_hash(token),
            "token_prefix": token[: len(TOKEN_PREFIX) + 6],
        }
        async with self._write_lock:
            at = now()
            async with self._pool.transaction() as conn:
                await conn.execute(
                    "INSERT INTO api_keys (id, label, role, scopes, token_hash, token_prefix, "
                    "created_at) VALUES (:id, :label, :role, :scopes, :token_hash, "
                    ":token_prefix, :created_at)",
                    {**row, "created_at": at},
                )
                detail = {"label": request.label, "role": request.role, "scopes": extra}
                await self._audit(conn, "api_key.create", f"api_key:{row['id']}", detail, at)
                stored = await _key_row(conn, row["id"])
        assert stored is not None
        key = _api_key(stored)
        return answers.ApiKeyCreated(**msgspec.structs.asdict(key), token=token)

    async def list_api_keys(self) -> list[answers.ApiKey]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute("SELECT * FROM api_keys ORDER BY created_at DESC, rowid")
            found = await cursor.fetchall()
        return [_api_key(row) for row in found]

    async def revoke_api_key(self, key_id: str) -> answers.ApiKeyRevoked:
        async with self._write_lock:
            at = now()
            async with self._pool.transaction() as conn:
                cursor = await conn.execute(
                    "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                    (at, key_id),
                )
                if not cursor.rowcount:
                    raise NotFound(f"API key {key_id} (or it is already revoked)")
                await self._audit(conn, "api_key.revoke", f"api_key:{key_id}", {}, at)
                row = await _key_row(conn, key_id)
        assert row is not None
        return answers.ApiKeyRevoked(api_key=_api_key(row))

    async def scopes_of_token(self, token: str) -> tuple[Role, frozenset[str]] | None:
        """The role and scopes of a live API key, or None for no such (or a revoked) key.
        Read on every request, so a revocation is effective from the next one."""
        wanted = token_hash(token)
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT role, scopes, token_hash FROM api_keys "
                "WHERE token_hash = ? AND revoked_at IS NULL",
                (wanted,),
            )
            row = await cursor.fetchone()
        if row is None or not hmac.compare_digest(row["token_hash"], wanted):
            return None
        role: Role = row["role"]
        return role, ROLE_SCOPES[role] | frozenset(json.loads(row["scopes"]))


async def _key_row(conn: Connection, key_id: str) -> Row | None:
    cursor = await conn.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,))
    return await cursor.fetchone()
