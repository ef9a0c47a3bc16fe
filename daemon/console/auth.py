"""Who is signed in to the console: server-side sessions, CSRF tokens, and the sign-in limiter.

A session is a random token in an HttpOnly, SameSite=Strict cookie; the server keeps only its
SHA-256, so a memory dump or a log line holding the table gives no usable cookie. Sessions live
in memory, not in the database: safe mode never writes the database, and a restart signing the
operator out is a fair price. Each session carries its own CSRF token (a synchronizer token:
every state-changing form posts it back) and the fingerprint of the password it was opened
with, so setting a new password ends every session opened with the old one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Literal

COOKIE = "keysmith_console"
IDLE_SECONDS = 30 * 60
ABSOLUTE_SECONDS = 12 * 60 * 60
MAX_SESSIONS = 64
# Sign-in failures allowed in the window, per client address and for everyone together; the
# global bound also caps the CPU and memory the argon2 checks can take.
WINDOW_SECONDS = 300.0
PER_ADDRESS_FAILURES = 5
GLOBAL_FAILURES = 50
MAX_TRACKED_ADDRESSES = 10_000

ShownOnce = Literal["license", "webhook-endpoint", "api-key"]


def fingerprint(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode()).hexdigest()


@dataclass
class Session:
    csrf: str
    password: str  # fingerprint of the password hash it was opened with
    created: float
    last_seen: float
    # A license just issued, a webhook endpoint or API key just created: kept until the page
    # the form redirects to shows its key, secret or token, once.
    shown_once: dict[ShownOnce, dict[str, Any]] = field(default_factory=dict)
    # A form posted after the previous session ended: (the page it came from, what was
    # typed), shown again on that page once, not sent.
    kept: tuple[str, dict[str, str]] | None = None

    def take_kept(self, path: str) -> dict[str, str]:
        if self.kept is None or self.kept[0] != path:
            return {}
        form, self.kept = self.kept[1], None
        return form

    def take(self, kind: ShownOnce) -> dict[str, Any] | None:
        return self.shown_once.pop(kind, None)


class Sessions:
    def __init__(self) -> None:
        self._by_digest: OrderedDict[str, Session] = OrderedDict()

    def open(
        self, password_fingerprint: str, kept: tuple[str, dict[str, str]] | None = None
    ) -> str:
        """A new session; returns the token for the cookie (kept nowhere else)."""
        token = secrets.token_urlsafe(32)
        now = time.monotonic()
        self._by_digest[_digest(token)] = Session(
            secrets.token_urlsafe(32), password_fingerprint, now, now, kept=kept
        )
        while len(self._by_digest) > MAX_SESSIONS:  # the oldest sign-in goes first
            self._by_digest.popitem(last=False)
        return token

    def find(self, token: str | None, password_fingerprint: str) -> Session | None:
        """The live session for this cookie, or None (and a stale one is forgotten)."""
        if not token:
            return None
        digest = _digest(token)
        session = self._by_digest.get(digest)
        if session is None:
            return None
        now = time.monotonic()
        stale = (
            now - session.last_seen > IDLE_SECONDS
            or now - session.created > ABSOLUTE_SECONDS
            or not hmac.compare_digest(session.password, password_fingerprint)
        )
        if stale:
            del self._by_digest[digest]
            return None
        session.last_seen = now
        return session

    def close(self, token: str | None) -> None:
        if token:
            self._by_digest.pop(_digest(token), None)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def csrf_ok(session: Session, presented: object) -> bool:
    return isinstance(presented, str) and hmac.compare_digest(
        presented.encode("utf-8", "surrogateescape"), session.csrf.encode()
    )


class SignInLimiter:
    """Failed sign-ins in a sliding window, per client address and in total."""

    def __init__(self) -> None:
        self._by_address: dict[str, deque[float]] = {}
        self._all: deque[float] = deque()

    def retry_after(self, address: str) -> int | None:
        """Seconds until this address may try again, or None when it may try now."""
        now = time.monotonic()
        waits = []
        mine = self._by_address.get(address)
        for failures, limit in ((mine, PER_ADDRESS_FAILURES), (self._all, GLOBAL_FAILURES)):
            if failures is None:
                continue
            _expire(failures, now)
            if len(failures) >= limit:
                waits.append(failures[0] + WINDOW_SECONDS - now)
        return max(1, int(max(waits)) + 1) if waits else None

    def failed(self, address: str) -> None:
        now = time.monotonic()
        if address not in self._by_address and len(self._by_address) >= MAX_TRACKED_ADDRESSES:
            self._forget_quiet(now)
        self._by_address.setdefault(address, deque()).append(now)
        self._all.append(now)

    def succeeded(self, address: str) -> None:
        self._by_address.pop(address, None)

    def _forget_quiet(self, now: float) -> None:
        for address in list(self._by_address):
            _expire(self._by_address[address], now)
            if not self._by_address[address]:
                del self._by_address[address]


def _expire(failures: deque[float], now: float) -> None:
    while failures and now - failures[0] > WINDOW_SECONDS:
        failures.popleft()
