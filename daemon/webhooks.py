"""The webhook sender: a background task that delivers the outbox (`daemon.licensing.outbox`).

Each enabled endpoint hears its events in order: only its oldest pending delivery is
attempted, and the next one only once that one is delivered or out of attempts. Endpoints
are served concurrently, so one slow receiver does not hold up another.

A receiver costs bounded time and memory: one attempt is cut off after the timeout, a
redirect is not followed (it counts as a failed attempt), and no answer body is ever read: the
connection is closed once the status line and headers are in. The sender runs on the daemon's
event loop but only ever awaits: the validate path never waits for it.

A receiver learns nothing of the seller's network, and the delivery log (readable with a
read-only key) tells nothing of what answered: every socket is opened only to an address
`daemon.webhook_targets` allows, checked on the address actually connected to (after DNS, at
each attempt); a failed answer is logged as its status code and the standard phrase for it,
never its body; and every connection failure reads the same, so the log cannot tell an open
port from a closed one.

Delivery is at least once: an attempt that reached the receiver but whose result was not
recorded (the daemon killed in between) is made again once its claim's lease runs out (after
the restart, or by another daemon on the same database), with the same `X-Keysat-Delivery`
id, so a receiver de-duplicates on it. Short of such a crash, each delivery is sent once
however many daemons share the database: each claims it in the database before sending.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import hmac
import ipaddress
import logging
import socket
import sqlite3
import time
from http import HTTPStatus
from typing import TYPE_CHECKING

import aiohttp

from daemon import __version__, metrics
from daemon.licensing.outbox import AttemptResult, Due, Outbox, backoff
from daemon.settings import Settings
from daemon.webhook_targets import REMEDY, address_refusal

if TYPE_CHECKING:
    from aiohappyeyeballs import AddrInfoType  # aiohttp's own dependency

log = logging.getLogger("keysmith.webhooks")

# How often the outbox is looked at; an event waits at most this long before its first attempt.
POLL_SECONDS = 0.5
# How a socket to a refused address fails (see _open_socket), told apart from a real failure.
REFUSED_MARK = "webhook destination refused"
# On stop, attempts under way get this long to finish (else made again when their lease ends).
STOP_GRACE_SECONDS = 2.0
# A claim lasts the attempt's timeout and this much more, for recording its result even behind
# a busy write lock; only a sender that died mid-attempt lets a lease run out.
LEASE_MARGIN_SECONDS = 10.0
USER_AGENT = f"Keysmith-Webhooks/{__version__}"


def signature(secret: str, body: bytes) -> str:
    """`X-Keysat-Signature`: `sha256=` and the hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Sender:
    def __init__(self, outbox: Outbox, settings: Settings) -> None:
        self._outbox = outbox
        self._timeout = settings.webhook_timeout
        self._backoff = settings.webhook_backoff
        self._max_attempts = max(1, settings.webhook_max_attempts)
        self._allowed = settings.webhook_allow_networks
        self._unreachable = f"no answer: could not connect, or no answer within {self._timeout:g} s"
        self._busy: dict[str, asyncio.Task[None]] = {}
        self._stopping = asyncio.Event()
        # Set when an attempt ends (or on stop): the endpoint's next delivery goes at once,
        # not at the next poll, so a backlog drains as fast as the receiver takes it.
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    def start(self) -> None:
        self._session = aiohttp.ClientSession(
            # Every connection's socket comes from _open_socket, which sees the address.
            connector=aiohttp.TCPConnector(socket_factory=self._open_socket),
            timeout=aiohttp.ClientTimeout(total=self._timeout),
            # No cookies kept between receivers, no proxy from the environment.
            cookie_jar=aiohttp.DummyCookieJar(),
            headers={"User-Agent": USER_AGENT},
        )
        self._task = asyncio.create_task(self._run(), name="webhook-sender")

    async def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._task is not None:
            await self._task
        if self._busy:
            _done, late = await asyncio.wait(self._busy.values(), timeout=STOP_GRACE_SECONDS)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                lease = self._timeout + LEASE_MARGIN_SECONDS
                for due in await self._outbox.claim_due(frozenset(self._busy), lease):
                    task = asyncio.create_task(self._deliver(due))
                    self._busy[due.endpoint_id] = task
                    task.add_done_callback(lambda _t, e=due.endpoint_id: self._done(e))
                depth = await self._outbox.outbox_depth()
                metrics.set_webhook_outbox(depth.pending, depth.oldest_pending_at)
            except sqlite3.Error as e:
                # A full disk or a held lock: nothing is lost (the outbox is in the database);
                # the next round tries again.
                log.warning(
                    "could not read or claim the webhook outbox; deliveries wait, nothing is lost; "
                    "retrying shortly",
                    extra={"error": str(e)},
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)

    def _done(self, endpoint_id: str) -> None:
        self._busy.pop(endpoint_id, None)
        self._wake.set()

    async def _deliver(self, due: Due) -> None:
        started = time.perf_counter()
        code, error = await self._attempt(due)
        latency_ms = int((time.perf_counter() - started) * 1000)
        attempt = due.attempts + 1
        result: AttemptResult
        if error is None:
            result = "delivered"
        elif attempt >= self._max_attempts:
            result = "failed"
            log.warning(
                "a webhook delivery failed its last attempt; it stays in the delivery log, "
                "and an admin can retry it",
                extra={"delivery": due.id, "endpoint": due.endpoint_id, "error": error},
            )
        else:
            result = "retry"
        try:
            await self._outbox.record_attempt(
                due,
                result=result,
                response_code=code,
                latency_ms=latency_ms,
                error=error,
                retry_in=backoff(attempt, self._backoff),
            )
        except sqlite3.Error as e:
            log.warning(
                "could not record a webhook attempt; the delivery stays pending and will be "
                "made again (receivers de-duplicate on X-Keysat-Delivery)",
                extra={"delivery": due.id, "error": str(e)},
            )
            return
        metrics.record_webhook_attempt(result)

    def _open_socket(self, addr_info: AddrInfoType) -> socket.socket:
        """A socket to connect to `addr_info`'s address (resolved, or written in the URL), if
        that address may receive webhooks."""
        family, kind, proto, _name, sockaddr = addr_info
        refused = address_refusal(ipaddress.ip_address(sockaddr[0]), self._allowed)
        if refused is not None:
            raise OSError(errno.EACCES, f"{REFUSED_MARK}: not a public address ({refused})")
        return socket.socket(family, kind, proto)

    async def _attempt(self, due: Due) -> tuple[int | None, str | None]:
        """(response code, error); error None when the receiver answered 2xx."""
        assert self._session is not None
        headers = {
            "Content-Type": "application/json",
            "X-Keysat-Event": due.event_type,
            "X-Keysat-Delivery": due.id,
            "X-Keysat-Signature": signature(due.secret, due.body),
        }
        try:
            async with self._session.post(
                due.url, data=due.body, headers=headers, allow_redirects=False
            ) as response:
                # Closing (not releasing) drops the connection with the body unread.
                response.close()
        except aiohttp.ClientConnectorError as e:
            if e.os_error.errno == errno.EACCES and REFUSED_MARK in str(e.os_error):
                return None, f"not sent: the receiver's address is not public; {REMEDY}"
            return None, self._unreachable
        except (TimeoutError, aiohttp.ClientError):
            return None, self._unreachable
        return response.status, _verdict(response.status)


def _verdict(status: int) -> str | None:
    """None for a 2xx answer, else the status and its standard phrase (never the receiver's
    own words: its reason phrase and body stay out of the delivery log)."""
    if 200 <= status < 300:
        return None
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "(non-standard status)"
    if 300 <= status < 400:
        return f"HTTP {status} {phrase}: redirects are not followed; set the final URL"
    return f"HTTP {status} {phrase}"
