"""Scoped API keys, as Keysat has them (`licensing-service/src/api/api_keys.rs`): a key has
one of five roles (Keysmith adds optional extra scopes); every admin route needs one scope,
`<resource>:read` for a GET, `<resource>:write` otherwise (declared in `daemon.api.table`).

The token (`ks_` and 32 random bytes in URL-safe base64, Keysat's form) is shown once, on
create; only its SHA-256 is stored, so the database cannot give it back. A token is
high-entropy, so a plain hash (no salt, no stretching) is enough, and it lets the key be found
by an index. Revocation writes `revoked_at`; every request reads the key again, so a revoked
key is refused from the next request on. Only the master admin key manages API keys (the
routes' scope is `MASTER`): a key must not mint itself more rights. A key's `last_used_at` is
written at most once per `LAST_USED_EVERY` seconds, so a busy key costs no write per request.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import sqlite3
import uuid
from typing import Any, Literal, get_args

import msgspec
from aiosqlite import Connection

from daemon.licensing import inputs, integrations
from daemon.licensing.core import Audit, now
from daemon.licensing.errors import BadRequest, NotFound
from daemon.licensing.integrations import Role
from daemon.licensing.state import iso_time
from daemon.licensing.store import Row

log = logging.getLogger("keysmith.licensing")

Access = Literal["read", "write"]
# Each admin path's first segment after /v1/admin/, and the resource of its scope, as Keysat
# names it. Keysat asks `licenses:read` for the revenue summary, and one `webhooks` scope for
# endpoints and deliveries alike.
RESOURCE_OF_SEGMENT = {
    "products": "products",
    "policies": "policies",
    "licenses": "licenses",
    "revenue": "licenses",
    "discount-codes": "discount_codes",
    "machines": "machines",
    "audit": "audit",
    "webhook-endpoints": "webhooks",
    "webhook-deliveries": "webhooks",
}
RESOURCES = tuple(dict.fromkeys(RESOURCE_OF_SEGMENT.values()))
SCOPES = tuple(f"{r}:{a}" for r in RESOURCES for a in get_args(Access))
MASTER = "master"
TOKEN_PREFIX = "ks_"
# Extra scopes an earlier Keysmith stored under its own spelling, read as Keysat spells them.
# (Its `revenue:*` are not carried over: `licenses:read` would grant more than they did.)
RENAMED_SCOPES = {
    "discount-codes:read": "discount_codes:read",
    "discount-codes:write": "discount_codes:write",
}

# A key's last_used_at is rewritten only once it is at least this old (Keysat writes it on
# every request; a once-a-minute figure says as much, without a write per request).
LAST_USED_EVERY = 60

READS = frozenset(s for s in SCOPES if s.endswith(":read"))
# Keysat's `Role::grants`; extra scopes add to a role, never remove.
ROLE_SCOPES: dict[Role, frozenset[str]] = {
    # Every read, no write.
    "read-only": READS,
    # Every read, and license writes (issue, revoke, suspend): an automation that hands out
    # licenses, touching neither the catalogue nor codes.
    "license-issuer": READS | {"licenses:write"},
    # License writes and freeing machines (Keysat's support also cancels subscriptions, which
    # Keysmith does not have): a support desk.
    "support": READS | {"licenses:write", "machines:write"},
    # Every read, and catalogue and license writes (products, policies, licenses): a merchant
    # or an agent standing up a catalogue without the master key. Neither codes, machines nor
    # webhooks (Keysat matches these three writes explicitly, never by suffix).
    "merchant-onboard": READS | {"products:write", "policies:write", "licenses:write"},
    # Every scope; still not the master-only routes (managing API keys).
    "full-admin": frozenset(SCOPES),
}


def scope_of(method: str, path: str) -> str:
    """The scope an admin route needs: its resource, read for GET, write otherwise."""
    segment = path.removeprefix("/v1/admin/").split("/", 1)[0]
    resource = RESOURCE_OF_SEGMENT.get(segment)
    if resource is None:
        raise ValueError(f"admin route {method} {path}: '{segment}' has no scope resource")
    return f"{resource}:{'read' if method == 'GET' else 'write'}"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def _stored_scopes(row: Row) -> list[str]:
    """A key's extra scopes as stored, read so that one bad row breaks neither the listing nor
    the key: a value that is not a list of names counts as no extra scope, a name that is no
    longer a scope is left out (the role's scopes still hold), each with one warning."""
    remedy = "the key keeps its role's scopes; revoke it and create a new one to change them"
    stored = inputs.shown_names("API key", row["id"], "scopes", row["scopes"], remedy)
    named = {RENAMED_SCOPES.get(s, s) for s in stored}
    known = sorted(named.intersection(SCOPES))
    unknown = sorted(named.difference(SCOPES))
    if unknown:
        reason = f"{', '.join(unknown)[:200]} not among {', '.join(SCOPES)}"
        inputs.warn_unshowable("API key", row["id"], "scopes", reason, str(known), remedy)
    return known


def _api_key(row: Row) -> integrations.ApiKey:
    return integrations.ApiKey(
        id=row["id"],
        label=row["label"],
        role=row["role"],
        scopes=_stored_scopes(row),
        token_prefix=row["token_prefix"],
        created_at=iso_time(row["created_at"]),
        last_used_at=iso_time(row["last_used_at"]),
        revoked_at=iso_time(row["revoked_at"]),
    )


class ApiKeys:
    def __init__(self, pool: Any, *, write_lock: asyncio.Lock, audit: Audit) -> None:
        self._pool = pool
        self._write_lock = write_lock
        self._audit = audit

    async def create_api_key(
        self, request: integrations.ApiKeyCreate
    ) -> integrations.ApiKeyCreated:
        extra = sorted(set(request.scopes or ()))
        unknown = [s for s in extra if s not in SCOPES]
        if unknown:
            renamed = RENAMED_SCOPES.get(unknown[0])
            hint = f" (Keysat spells it {renamed!r})" if renamed else ""
            raise BadRequest(
                f"'scopes': unknown scope {unknown[0]!r}{hint}; known: {', '.join(SCOPES)}"
            )
        # Keysat's form: `ks_` and 32 random bytes in unpadded URL-safe base64 (43 characters).
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = {
            "id": str(uuid.uuid4()),
            "label": request.label,
            "role": request.role,
            "scopes": msgspec.json.encode(extra).decode(),
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
        return integrations.ApiKeyCreated(**msgspec.structs.asdict(key), token=token)

    async def list_api_keys(self) -> list[integrations.ApiKey]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT * FROM api_keys ORDER BY created_at DESC, rowid DESC"
            )
            found = await cursor.fetchall()
        return [_api_key(row) for row in found]

    async def revoke_api_key(
        self, key_id: str
    ) -> integrations.ApiKeyRevoked | integrations.ApiKeyAlreadyRevoked:
        """Keysat's revoke: `{ok, revoked_at}`, or `{ok, already_revoked}` when it was already
        revoked (nothing written, not audited again); NotFound for no such key."""
        async with self._write_lock:
            at = now()
            async with self._pool.transaction() as conn:
                cursor = await conn.execute(
                    "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                    (at, key_id),
                )
                revoked = cursor.rowcount > 0
                if revoked:
                    await self._audit(conn, "api_key.revoke", f"api_key:{key_id}", {}, at)
                elif await _key_row(conn, key_id) is None:
                    raise NotFound(f"API key {key_id}")
        if not revoked:
            return integrations.ApiKeyAlreadyRevoked(ok=True, already_revoked=True)
        revoked_at = iso_time(at)
        assert revoked_at is not None
        return integrations.ApiKeyRevoked(ok=True, revoked_at=revoked_at)

    async def scopes_of_token(self, token: str) -> tuple[str, Role, frozenset[str]] | None:
        """The id, role and scopes of a live API key, or None for no such (or a revoked) key.
        Read on every request, so a revocation is effective from the next one."""
        wanted = token_hash(token)
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT id, role, scopes, token_hash, last_used_at FROM api_keys "
                "WHERE token_hash = ? AND revoked_at IS NULL",
                (wanted,),
            )
            row = await cursor.fetchone()
        if row is None or not hmac.compare_digest(row["token_hash"], wanted):
            return None
        await self._note_use(row["id"], row["last_used_at"])
        role: Role = row["role"]
        return row["id"], role, ROLE_SCOPES[role].union(_stored_scopes(row))

    async def _note_use(self, key_id: str, last_used_at: int | None) -> None:
        """Record the use, unless it was recorded less than LAST_USED_EVERY seconds ago: the
        check on the row just read costs no write; the UPDATE's own condition keeps two
        requests racing past it from writing twice. Bookkeeping only: a write that fails (a
        full disk, a held lock; the pool reports it to /healthz) does not refuse the request."""
        at = now()
        if last_used_at is not None and at - last_used_at < LAST_USED_EVERY:
            return
        try:
            async with self._pool.transaction() as conn:
                await conn.execute(
                    "UPDATE api_keys SET last_used_at = ? WHERE id = ? "
                    "AND (last_used_at IS NULL OR last_used_at <= ?)",
                    (at, key_id, at - LAST_USED_EVERY),
                )
        except sqlite3.Error as e:
            log.warning(
                f"API key {key_id}: its last use was not recorded ({e}); the request goes on "
                "and the next use after a minute tries again"
            )


async def _key_row(conn: Connection, key_id: str) -> Row | None:
    cursor = await conn.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,))
    return await cursor.fetchone()
