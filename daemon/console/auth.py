"""Who is signed in to the console: server-side sessions, CSRF tokens, and the sign-in limiter.

A session is a random token in an HttpOnly, SameSite=Strict cookie; the server keeps only its
SHA-256, so a memory dump or a log line holding the table gives no usable cookie. Sessions live
in memory, not in the database: safe mode never writes the database, and a restart signing the
operator out is a fair price. Each session carries its own CSRF token (a synchronizer token:
every state-changing form posts it back) and the fingerprint of the password it was opened
with, so setting a new password ends every session opened with the old one.

A browser that signed in also keeps a device cookie, signed with the stored password hash: its
sign-ins count on their own, not with their address, and never wait in the slowed queue, so
no flood of guesses (from the operator's own address, or from everyone) keeps the operator out
of a browser it used before. Only the password makes one, and a new password voids them all.
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
# Starts every session token, so the log's redaction knows one wherever a client puts it
# (daemon.logs: a Keysmith token is `ks_`, `ksc_` or `ksd_` and URL-safe base64).
TOKEN_PREFIX = "ksc_"
DEVICE_COOKIE = "keysmith_device"
DEVICE_PREFIX = "ksd_"
DEVICE_SECONDS = 180 * 24 * 60 * 60
IDLE_SECONDS = 30 * 60
ABSOLUTE_SECONDS = 12 * 60 * 60
MAX_SESSIONS = 64
# Sign-in: wrong passwords allowed per client address in the window (then that address waits
# for the window to pass), and in all before sign-in slows down. Slowed, every attempt from
# any address waits its turn, one check every SLOWED_SECONDS: the right password still gets
# in, and brute force from any number of addresses is bounded by GLOBAL_FAILURES + WINDOW /
# SLOWED_SECONDS = 150 guesses in five minutes (43,200 a day).
WINDOW_SECONDS = 300.0
PER_ADDRESS_FAILURES = 5
GLOBAL_FAILURES = 50
SLOWED_SECONDS = 3.0
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
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
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


def device_cookie(password_hash: str) -> str:
    """A new device cookie's value: a random id and its MAC under the stored hash (whose salt
    makes it a secret only this console holds)."""
    device = secrets.token_urlsafe(16)
    return f"{DEVICE_PREFIX}{device}.{_device_mac(password_hash, device)}"


def known_device(cookie: str | None, password_hash: str) -> str | None:
    """The device id of a cookie made under the current password, else None."""
    if not cookie or not cookie.startswith(DEVICE_PREFIX) or len(cookie) > 128:
        return None
    device, _, mac = cookie.removeprefix(DEVICE_PREFIX).partition(".")
    expected = _device_mac(password_hash, device)
    if device and hmac.compare_digest(mac.encode("utf-8", "surrogateescape"), expected.encode()):
        return device
    return None


def _device_mac(password_hash: str, device: str) -> str:
    message = f"keysmith console device {device}".encode("utf-8", "surrogateescape")
    return hmac.new(password_hash.encode(), message, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Turn:
    """A sign-in attempt let through: check the password at `start` (monotonic seconds), later
    than now when sign-in is slowed, then report the outcome with `SignInLimiter.finish`."""

    key: str  # the client address, or the known device
    start: float
    slowed: bool


@dataclass(frozen=True)
class Paused:
    """This address (or device) made too many wrong guesses: it may try again in `retry_after`
    seconds."""

    retry_after: int


class SignInLimiter:
    """Sign-in attempts per client address, and their pace for everyone.

    An attempt counts against its address from the moment it is let in (so concurrent guesses
    cannot overtake the limit) until it ends: a wrong password stays counted for WINDOW_SECONDS,
    a right one clears the address. There is no global lockout: past GLOBAL_FAILURES recent
    wrong passwords, attempts are spaced SLOWED_SECONDS apart, in the order they came.
    """

    def __init__(self) -> None:
        self._by_address: dict[str, deque[float]] = {}
        self._in_flight: dict[str, int] = {}
        self._in_flight_total = 0
        self._all: deque[float] = deque()
        self._next_slot = 0.0

    def admit(self, key: str, *, queued: bool = True) -> Turn | Paused:
        """Let an attempt counted under `key` (an address, or a known device: `queued=False`,
        never slowed) through, or say how long it must wait."""
        now = time.monotonic()
        paused = self.paused(key)
        if paused is not None:
            return paused
        self._in_flight[key] = self._in_flight.get(key, 0) + 1
        self._in_flight_total += 1
        if not queued or len(self._all) + self._in_flight_total <= GLOBAL_FAILURES:
            return Turn(key, now, slowed=False)
        start = max(now, self._next_slot)
        self._next_slot = start + SLOWED_SECONDS
        return Turn(key, start, slowed=True)

    def paused(self, key: str) -> Paused | None:
        """Whether this address or device must wait before its next attempt."""
        now = time.monotonic()
        _expire(self._all, now)
        mine = self._by_address.get(key, deque())
        _expire(mine, now)
        if len(mine) + self._in_flight.get(key, 0) < PER_ADDRESS_FAILURES:
            return None
        # All counted ones may still be in flight: then a short wait is the honest answer.
        ends = mine[0] + WINDOW_SECONDS if mine else now + SLOWED_SECONDS
        return Paused(max(1, int(ends - now) + 1))

    def finish(self, turn: Turn, matched: bool | None) -> None:
        """The attempt ended: `matched` says whether the password was right (None: it was
        never checked, e.g. its form did not arrive)."""
        self._in_flight_total -= 1
        left = self._in_flight.pop(turn.key, 1) - 1
        if left:
            self._in_flight[turn.key] = left
        if matched:
            self._by_address.pop(turn.key, None)
        elif matched is False:
            self._failed(turn.key)

    def _failed(self, address: str) -> None:
        now = time.monotonic()
        if address not in self._by_address and len(self._by_address) >= MAX_TRACKED_ADDRESSES:
            self._forget_quiet(now)
        self._by_address.setdefault(address, deque()).append(now)
        self._all.append(now)

    def _forget_quiet(self, now: float) -> None:
        for address in list(self._by_address):
            _expire(self._by_address[address], now)
            if not self._by_address[address]:
                del self._by_address[address]


def _expire(failures: deque[float], now: float) -> None:
    while failures and now - failures[0] > WINDOW_SECONDS:
        failures.popleft()
