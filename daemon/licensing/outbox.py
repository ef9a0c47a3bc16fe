"""Webhooks: endpoints and the delivery log (Keysat's shapes), and the durable outbox.

`emit` writes an event in the transaction of the change it reports, with one delivery per
enabled endpoint subscribed to its type: an event exists if and only if its change committed,
and a restart finds every delivery not yet made. The sender (`daemon.webhooks`) claims the
deliveries due (`claim_due`: per endpoint only the oldest pending one, so each endpoint hears
its events in order) and records each attempt (`record_attempt`). This module knows no HTTP.

A claim is a lease in the database: the delivery's `next_attempt_at` moves to the lease's end
before it is sent, so every other process sharing the database (a second daemon) finds it not
yet due. A sender that dies mid-attempt leaves the lease to run out, and the delivery is made
again then: at least once, with a duplicate only after a crash mid-attempt.

The body of a delivery is fixed when the event is written (`payload`), so every attempt
sends the same bytes and the signature over them never changes; the delivery id (the
`X-Keysat-Delivery` header) is stable across retries, so a receiver can de-duplicate.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import secrets
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import msgspec
from aiosqlite import Connection

from daemon import settings
from daemon.licensing import answers, integrations, rows, store
from daemon.licensing.core import Audit, now
from daemon.licensing.errors import BadRequest, NotFound
from daemon.licensing.events import PAYLOAD_OF, Event, Payload, SelfHealed
from daemon.licensing.integrations import EVERY_EVENT, EventType
from daemon.licensing.state import iso_time
from daemon.licensing.store import Row
from daemon.logs import register_secret
from daemon.webhook_targets import host_refusal

AttemptResult = Literal["delivered", "retry", "failed"]
# The wait stops doubling after 6 doublings (64 x the first wait; 320 s from the default 5 s),
# and never exceeds an hour: a receiver back up should not wait much longer than it was down.
MAX_BACKOFF_FACTOR = 64
MAX_BACKOFF_SECONDS = 3600.0
SECRET_BYTES = 32
# An endpoint's settled deliveries beyond the newest ?2, on the partial index of 0015.
SETTLED_BEYOND_SQL = (
    "SELECT id, event_id FROM webhook_deliveries WHERE endpoint_id = ?1 AND status != 'pending' "
    "ORDER BY event_id DESC LIMIT -1 OFFSET ?2"
)
DELETE_UNUSED_EVENT_SQL = (
    "DELETE FROM webhook_events WHERE id = ?1 "
    "AND NOT EXISTS (SELECT 1 FROM webhook_deliveries WHERE event_id = ?1)"
)
# How many entries of the migrator's heal log have become events (a settings row).
HEALS_ANNOUNCED_SETTING = "webhooks.heals_announced"
# An endpoint's event types as JSON, or NULL (none) when the stored text is not a JSON array:
# one row an older version or a hand edit broke must not stop every change from committing.
EVENT_TYPES_SQL = (
    "CASE WHEN json_valid(event_types) THEN "
    "CASE WHEN json_type(event_types) = 'array' THEN event_types END END"
)
# Keysat's `updated_at`: the endpoint's last change, which is its last audit entry (each
# change writes one in its transaction); the (subject, created_at) index finds it.
ENDPOINT_SQL = (
    "SELECT e.*, coalesce((SELECT max(a.created_at) FROM audit_log a "
    "WHERE a.subject = 'webhook:' || e.id), e.created_at) AS updated_at "
    "FROM webhook_endpoints e"
)
DELIVERY_SQL = (
    "SELECT d.*, e.event_type, e.payload FROM webhook_deliveries d "
    "JOIN webhook_events e ON e.id = d.event_id"
)
# A delivery query's filters (DeliveryQuery's endpoint and status).
DELIVERY_WHERE = (
    "WHERE (:endpoint IS NULL OR d.endpoint_id = :endpoint) "
    "AND (:status = 'all' OR d.status = :status)"
)


async def emit(
    conn: Connection,
    event_type: EventType,
    data: Payload,
    at: int,
    *,
    happened_at: int | None = None,
) -> None:
    """The event of a change, in the change's own transaction (next to its audit row).
    `happened_at`: an event recorded after the fact goes only to endpoints that existed then."""
    assert isinstance(data, PAYLOAD_OF[event_type]), (event_type, type(data))
    endpoints = await _listeners(conn, event_type, happened_at)
    if not endpoints:
        return  # nobody listens: nothing to keep
    timestamp = iso_time(at)
    assert timestamp is not None
    body = Event(event_type=event_type, timestamp=timestamp, data=data)
    cursor = await conn.execute(
        "INSERT INTO webhook_events (event_type, payload, created_at) VALUES (?, ?, ?)",
        (event_type, msgspec.json.encode(body).decode(), at),
    )
    event_id = cursor.lastrowid
    await conn.executemany(
        "INSERT INTO webhook_deliveries (id, endpoint_id, event_id, next_attempt_at, created_at) "
        "VALUES (?, ?, ?, ?, ?)",
        [(str(uuid.uuid4()), endpoint, event_id, at, at) for endpoint in endpoints],
    )


async def _listeners(conn: Connection, event_type: str, since: int | None) -> list[str]:
    cursor = await conn.execute(
        "SELECT id FROM webhook_endpoints WHERE enabled = 1 AND created_at <= ? AND EXISTS "
        f"(SELECT 1 FROM json_each({EVENT_TYPES_SQL}) WHERE value IN (?, ?))",
        (2**62 if since is None else since, event_type, EVERY_EVENT),
    )
    return [row[0] for row in await cursor.fetchall()]


@dataclass(frozen=True, slots=True)
class Due:
    """A delivery to attempt now: what the sender needs, nothing more."""

    id: str
    endpoint_id: str
    url: str
    secret: str
    event_type: str
    body: bytes
    attempts: int
    # When it is due, as read; once claimed, when the claim's lease ends. Each write that
    # decides the delivery requires it unchanged (compare and set), so only one sender wins.
    next_attempt_at: float


@dataclass(frozen=True, slots=True)
class OutboxDepth:
    pending: int
    oldest_pending_at: int | None


def backoff(attempt: int, base: float) -> float:
    """Seconds before the next attempt: doubling from `base`, jittered to 50-100 % so that
    endpoints that failed together do not retry together."""
    factor = min(MAX_BACKOFF_FACTOR, 2 ** min(attempt - 1, 30))
    return min(MAX_BACKOFF_SECONDS, base * factor) * random.uniform(0.5, 1.0)


class Outbox:
    def __init__(
        self,
        pool: Any,
        *,
        write_lock: asyncio.Lock,
        audit: Audit,
        webhook_history: int,
        webhook_networks: tuple[settings.Network, ...],
    ) -> None:
        self._pool = pool
        self._write_lock = write_lock
        self._audit = audit
        # Settled deliveries kept per endpoint; private networks an endpoint may be on.
        self._webhook_history = webhook_history
        self._webhook_networks = webhook_networks

    async def create_webhook_endpoint(
        self, request: integrations.WebhookEndpointCreate
    ) -> integrations.WebhookEndpoint:
        host = urllib.parse.urlsplit(request.url).hostname or ""
        refused = host_refusal(host, self._webhook_networks)
        if refused is not None:
            raise BadRequest(f"'url' is refused: {refused}")
        secret = request.secret or secrets.token_hex(SECRET_BYTES)
        endpoint_id = str(uuid.uuid4())
        async with self._write_lock:
            at = now()
            async with self._pool.transaction() as conn:
                await conn.execute(
                    "INSERT INTO webhook_endpoints (id, url, event_types, description, secret, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        endpoint_id,
                        request.url,
                        # As given (Keysat keeps the order), each type once.
                        msgspec.json.encode(list(dict.fromkeys(request.event_types))).decode(),
                        request.description,
                        secret,
                        at,
                    ),
                )
                detail = {"url": request.url, "event_types": request.event_types}
                await self._audit(conn, "webhook.create", f"webhook:{endpoint_id}", detail, at)
                row = await _endpoint_row(conn, endpoint_id)
        register_secret(secret)
        listed = rows.webhook_endpoint(row)
        return integrations.WebhookEndpointCreated(**msgspec.structs.asdict(listed), secret=secret)

    async def webhook_secrets(self) -> list[str]:
        """Every endpoint's secret, for the log's redaction (`daemon.logs.register_secret`)."""
        async with self._pool.connection() as conn:
            cursor = await conn.execute("SELECT secret FROM webhook_endpoints")
            return [row[0] for row in await cursor.fetchall()]

    async def list_webhook_endpoints(self) -> list[integrations.WebhookEndpoint]:
        """Newest first, as Keysat lists them."""
        async with self._pool.connection() as conn:
            cursor = await conn.execute(f"{ENDPOINT_SQL} ORDER BY e.created_at DESC, e.rowid DESC")
            return [rows.webhook_endpoint(row) for row in await cursor.fetchall()]

    async def set_webhook_active(
        self, endpoint_id: str, active: bool
    ) -> integrations.WebhookEndpointSet:
        """Keysat's `active`: an inactive endpoint is sent nothing and no new event is queued
        for it; unlike Keysat, its pending deliveries wait (not failed) and resume."""
        async with self._write_lock:
            at = now()
            async with self._pool.transaction() as conn:
                cursor = await conn.execute(
                    "UPDATE webhook_endpoints SET enabled = ? WHERE id = ?",
                    (int(active), endpoint_id),
                )
                if not cursor.rowcount:
                    raise NotFound(f"webhook endpoint {endpoint_id}")
                action = "webhook.enable" if active else "webhook.disable"
                await self._audit(conn, action, f"webhook:{endpoint_id}", {}, at)
                row = await _endpoint_row(conn, endpoint_id)
        return integrations.WebhookEndpointSet(endpoint=rows.webhook_endpoint(row))

    async def delete_webhook_endpoint(self, endpoint_id: str) -> answers.Deleted:
        """Its deliveries and their log go with it (ON DELETE CASCADE)."""
        async with self._write_lock:
            at = now()
            async with self._pool.transaction() as conn:
                cursor = await conn.execute(
                    "DELETE FROM webhook_endpoints WHERE id = ?", (endpoint_id,)
                )
                if not cursor.rowcount:
                    raise NotFound(f"webhook endpoint {endpoint_id}")
                await self._audit(conn, "webhook.delete", f"webhook:{endpoint_id}", {}, at)
        return answers.Deleted(deleted=endpoint_id)

    async def list_deliveries(
        self, query: integrations.DeliveryQuery
    ) -> list[integrations.Delivery]:
        """Newest event first, as Keysat lists them."""
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                f"{DELIVERY_SQL} {DELIVERY_WHERE} "
                "ORDER BY d.event_id DESC, d.id LIMIT :limit OFFSET :offset",
                {
                    "endpoint": query.endpoint_id,
                    "status": query.status,
                    "limit": query.limit,
                    "offset": query.offset,
                },
            )
            found = await cursor.fetchall()
            return [await _delivery(conn, row) for row in found]

    async def count_deliveries(self, query: integrations.DeliveryQuery) -> int:
        """How many deliveries the query's filters select, every page together."""
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                f"SELECT count(*) FROM webhook_deliveries d {DELIVERY_WHERE}",
                {"endpoint": query.endpoint_id, "status": query.status},
            )
            (total,) = await cursor.fetchone()
            return int(total)

    async def retry_delivery(self, delivery_id: str) -> integrations.Delivery:
        """As Keysat: any delivery (delivered, failed or still pending) back to pending, due
        now, not delivered, with a fresh count of attempts (the log keeps the old ones). It is
        sent before the endpoint's newer pending deliveries, as its event is older."""
        async with self._write_lock:
            at = now()
            async with self._pool.transaction() as conn:
                cursor = await conn.execute(
                    "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, "
                    "next_attempt_at = ?, delivered_at = NULL WHERE id = ?",
                    (at, delivery_id),
                )
                if not cursor.rowcount:
                    raise NotFound(f"webhook delivery {delivery_id}")
                await self._audit(conn, "webhook.retry", f"delivery:{delivery_id}", {}, at)
                cursor = await conn.execute(f"{DELIVERY_SQL} WHERE d.id = ?", (delivery_id,))
                row = await cursor.fetchone()
                return await _delivery(conn, row)

    async def announce_heals(self, heal_log: list[dict[str, Any]]) -> None:
        """`migration.self_healed` for each heal-log entry (oldest first) not yet announced, to
        the endpoints that existed when it happened. The count announced is stored with the
        events, so each heal is announced once; with no endpoint listening nothing is written
        (a heal changes no data of the seller's)."""
        async with self._write_lock:
            at = now()
            async with self._pool.transaction() as conn:
                if not await _listeners(conn, "migration.self_healed", None):
                    return
                announced = int(await store.get_setting(conn, HEALS_ANNOUNCED_SETTING) or 0)
                if announced >= len(heal_log):
                    return
                for heal in heal_log[announced:]:
                    healed = _unix(heal["healed_at"])
                    event = SelfHealed(**heal)
                    await emit(conn, "migration.self_healed", event, at, happened_at=healed)
                await store.put_setting(conn, HEALS_ANNOUNCED_SETTING, str(len(heal_log)), at)

    # ----- for the sender -----

    async def claim_due(self, skip: frozenset[str], lease_seconds: float) -> list[Due]:
        """The deliveries due (`_due_deliveries`), each claimed until `lease_seconds` from now,
        in one transaction; a delivery another process claimed or settled since it was read
        is left out."""
        found = await self._due_deliveries(skip)
        if not found:
            return []
        lease = time.time() + lease_seconds
        claimed = []
        async with self._write_lock, self._pool.transaction() as conn:
            for due in found:
                cursor = await conn.execute(
                    "UPDATE webhook_deliveries SET next_attempt_at = ? WHERE id = ? "
                    "AND status = 'pending' AND attempts = ? AND next_attempt_at = ?",
                    (lease, due.id, due.attempts, due.next_attempt_at),
                )
                if cursor.rowcount:
                    claimed.append(dataclasses.replace(due, next_attempt_at=lease))
        return claimed

    async def _due_deliveries(self, skip: frozenset[str]) -> list[Due]:
        """Per enabled endpoint (but those in `skip`, being delivered to now), its oldest
        pending delivery, if its time has come. One indexed lookup per endpoint."""
        clock = time.time()
        due = []
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT id, url, secret FROM webhook_endpoints WHERE enabled = 1"
            )
            for endpoint in await cursor.fetchall():
                if endpoint["id"] in skip:
                    continue
                cursor = await conn.execute(
                    "SELECT d.id, d.attempts, d.next_attempt_at, e.event_type, e.payload "
                    "FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id "
                    "WHERE d.endpoint_id = ? AND d.status = 'pending' "
                    "ORDER BY d.event_id LIMIT 1",
                    (endpoint["id"],),
                )
                head = await cursor.fetchone()
                if head is not None and head["next_attempt_at"] <= clock:
                    due.append(
                        Due(
                            id=head["id"],
                            endpoint_id=endpoint["id"],
                            url=endpoint["url"],
                            secret=endpoint["secret"],
                            event_type=head["event_type"],
                            body=head["payload"].encode(),
                            attempts=head["attempts"],
                            next_attempt_at=head["next_attempt_at"],
                        )
                    )
        return due

    async def record_attempt(
        self,
        due: Due,
        *,
        result: AttemptResult,
        response_code: int | None,
        latency_ms: int,
        error: str | None,
        retry_in: float,
    ) -> None:
        """The attempt in the log and the delivery's new state, in one transaction. An attempt
        whose claim was lost meanwhile (its lease ran out and another sender claimed it, or an
        admin asked for a retry) is logged but decides nothing: the new claim does."""
        attempt = due.attempts + 1
        async with self._write_lock:
            at = now()
            async with self._pool.transaction() as conn:
                await conn.execute(
                    "INSERT INTO webhook_attempts (delivery_id, attempt, status, response_code, "
                    "latency_ms, error, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (due.id, attempt, result, response_code, latency_ms, error, at),
                )
                await conn.execute(
                    "UPDATE webhook_deliveries SET attempts = ?, next_attempt_at = ?, "
                    "status = ?, delivered_at = ? WHERE id = ? AND status = 'pending' "
                    "AND next_attempt_at = ?",
                    (
                        attempt,
                        time.time() + retry_in,
                        "pending" if result == "retry" else result,
                        at if result == "delivered" else None,
                        due.id,
                        due.next_attempt_at,
                    ),
                )
                if result != "retry":
                    await _purge_history(conn, due.endpoint_id, keep=self._webhook_history)

    async def outbox_depth(self) -> OutboxDepth:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT count(*), min(created_at) FROM webhook_deliveries WHERE status = 'pending'"
            )
            count, oldest = await cursor.fetchone()
        return OutboxDepth(pending=count, oldest_pending_at=oldest)


async def _purge_history(conn: Connection, endpoint_id: str, *, keep: int) -> None:
    """Delete the endpoint's settled deliveries beyond the `keep` most recent ones, with their
    attempts and the events no delivery refers to any more; pending ones are never touched.
    Run as each delivery settles, so there is seldom more than one to delete."""
    cursor = await conn.execute(SETTLED_BEYOND_SQL, (endpoint_id, keep))
    old = [(row["id"], row["event_id"]) for row in await cursor.fetchall()]
    if not old:
        return
    await conn.executemany(
        "DELETE FROM webhook_attempts WHERE delivery_id = ?", [(d,) for d, _ in old]
    )
    await conn.executemany("DELETE FROM webhook_deliveries WHERE id = ?", [(d,) for d, _ in old])
    await conn.executemany(DELETE_UNUSED_EVENT_SQL, [(e,) for e in {e for _, e in old}])


def _unix(rfc3339: str) -> int:
    """The heal log's time (`2026-01-31T12:00:00.000Z`) as Unix seconds."""
    return int(datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp())


async def _endpoint_row(conn: Connection, endpoint_id: str) -> Row:
    cursor = await conn.execute(f"{ENDPOINT_SQL} WHERE e.id = ?", (endpoint_id,))
    row = await cursor.fetchone()
    assert row is not None, "read in the transaction that wrote it"
    return row


async def _delivery(conn: Connection, row: Row) -> integrations.Delivery:
    pending = row["status"] == "pending"
    cursor = await conn.execute(
        "SELECT * FROM webhook_attempts WHERE delivery_id = ? ORDER BY id", (row["id"],)
    )
    log = [
        integrations.DeliveryAttempt(
            attempt=a["attempt"],
            status=a["status"],
            response_code=a["response_code"],
            latency_ms=a["latency_ms"],
            error=a["error"],
            at=iso_time(a["at"]),
        )
        for a in await cursor.fetchall()
    ]
    # Keysat's last_* say the last attempt since the delivery was (re)queued: none after a retry.
    last = log[-1] if log and row["attempts"] else None
    return integrations.Delivery(
        id=row["id"],
        endpoint_id=row["endpoint_id"],
        event_type=row["event_type"],
        payload_json=row["payload"],
        attempt_count=row["attempts"],
        next_attempt_at=iso_time(int(row["next_attempt_at"]) if pending else None),
        last_status_code=None if last is None else last.response_code,
        last_error=None if last is None else last.error,
        delivered_at=iso_time(row["delivered_at"]),
        created_at=iso_time(row["created_at"]),
        event_id=row["event_id"],
        status=row["status"],
        log=log,
    )
