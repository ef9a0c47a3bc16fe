"""The validation hot path's reads: exact answers from the database, at bounded memory.

The database file is the one truth. Several daemons may serve it, and a StartOS action may
revoke a license from its own short-lived process while the daemon serves; whatever any of
them commits must be what the very next validation in every process answers. So nothing
that can change (status, expiry, seats, machines, policy, product) is kept in memory here:

* `LicenseReader` reads one license, its product slug, its seat limit and, when a
  fingerprint is given, that fingerprint's active machine, in one primary-key statement per
  validation. It uses its own synchronous, read-only stdlib `sqlite3` connection owned by the
  event-loop thread: in WAL mode a reader never waits for a writer, every statement sees the
  last transaction committed by any connection of any process, and the lookup is cheaper
  than the hop to an aiosqlite worker thread alone (~27 us). Boot reads nothing per license,
  and memory does not grow with the number of licenses (the connection's page cache is
  SQLite's bounded default).

  Measured on the bench machine with 1,000,000 licenses (bench/bench_scale.py's database,
  warm page cache): the statement costs 14.6 us, a whole `Licensing.validate` 21-25 us,
  against ~83 us of CPU for the whole HTTP request. The alternative measured was a bounded
  cache of these views, emptied whenever `PRAGMA data_version` changes (any commit by any
  connection). The pragma alone costs 3.6 us, so a hit saves ~11 us (about an eighth of a
  request) and only while nothing at all is written: a single heartbeat or audit row
  empties it, and keeping it warm across writes needs a change-log table that every
  licensing transaction must also write. Not worth a second source of truth.
* `VerifiedKeys` remembers, per exact key string, the outcome of checking its Ed25519
  signature (~60 us): the license and product ids it names, or `BAD_SIGNATURE`. Both are pure
  functions of the string and the issuer key, so a remembered outcome is what a fresh
  verify would say, in every process, forever. It is an LRU bounded both by entry count and
  by the total length of the key strings it holds, so a flood of distinct forged keys, even
  padded to the maximum length, costs at most the configured bytes. Format errors are not
  remembered: parsing is cheap and garbage must not evict real keys.
"""

from __future__ import annotations

import enum
import sqlite3
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from daemon.licensing import inputs, keys, store, store_machines

# A read in WAL mode waits only in rare moments (another process recovering the WAL index);
# the event loop must not stall longer than this for it.
READ_BUSY_TIMEOUT_MS = 200


class Signature(enum.Enum):
    """The one failure worth remembering about a well-formed key."""

    BAD = "bad_signature"


BAD_SIGNATURE = Signature.BAD


@dataclass(frozen=True, slots=True)
class KeyIdentity:
    """What a verified key names; everything else validation needs is read from the database."""

    license_id: str
    product_id: str


@dataclass(frozen=True, slots=True)
class KeyCacheStats:
    entries: int
    key_bytes: int
    hits: int
    misses: int


class VerifiedKeys:
    """An LRU from key strings to their verified identity or BAD_SIGNATURE, bounded twice."""

    def __init__(
        self,
        public: Ed25519PublicKey,
        *,
        max_entries: int,
        max_bytes: int,
    ) -> None:
        self._public = public
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._outcomes: OrderedDict[str, KeyIdentity | Signature] = OrderedDict()
        self._bytes = 0
        self._hits = 0
        self._misses = 0

    def __len__(self) -> int:
        return len(self._outcomes)

    def rekey(self, public: Ed25519PublicKey) -> None:
        """Verify with another issuer key from now on; what the old one verified is forgotten."""
        self._public = public
        self._outcomes.clear()
        self._bytes = 0

    def stats(self) -> KeyCacheStats:
        return KeyCacheStats(len(self._outcomes), self._bytes, self._hits, self._misses)

    def identity_of(self, key: object) -> KeyIdentity | Signature:
        """What `key` names, or BAD_SIGNATURE. Raises KeyFormatError for a malformed key."""
        if isinstance(key, str):
            outcome = self._outcomes.get(key)
            if outcome is not None:
                self._hits += 1
                self._outcomes.move_to_end(key)
                return outcome
        self._misses += 1
        try:
            payload = keys.verify_key(self._public, key)
        except keys.KeySignatureError:
            outcome = BAD_SIGNATURE
        else:
            outcome = KeyIdentity(str(payload.license_id), str(payload.product_id))
        assert isinstance(key, str)  # verify_key refused anything else as a format error
        self._remember(key, outcome)
        return outcome

    def _remember(self, key: str, outcome: KeyIdentity | Signature) -> None:
        size = len(key)
        if size > self._max_bytes or self._max_entries == 0:
            return
        while self._outcomes and (
            len(self._outcomes) >= self._max_entries or self._bytes + size > self._max_bytes
        ):
            oldest, _ = self._outcomes.popitem(last=False)
            self._bytes -= len(oldest)
        self._outcomes[key] = outcome
        self._bytes += size


@dataclass(frozen=True, slots=True)
class LicenseView:
    """What validation needs to know about one license, as committed when it was read."""

    id: str
    product_id: str
    product_slug: str
    status: str
    issued_at: int
    expires_at: int | None
    is_trial: bool
    entitlements: tuple[str, ...]
    # 0 = unlimited
    max_machines: int
    # Seconds after expires_at during which validation still answers ok, in grace.
    grace_seconds: int
    fingerprint_hash: str | None
    # The active machine of the fingerprint asked about (None if not asked or not active).
    machine_id: str | None

    @property
    def issued_at_text(self) -> str:
        return iso_time(self.issued_at)  # type: ignore[return-value]

    @property
    def expires_at_text(self) -> str | None:
        return iso_time(self.expires_at)


# One statement, so the license and its machine come from one committed snapshot.
_VIEW_SQL = (
    "SELECT l.id, l.product_id, p.slug, l.status, l.issued_at, l.expires_at, l.is_trial, "
    f"l.entitlements, {store.SEATS}, {store.GRACE}, l.fingerprint_hash, "
    "(SELECT m.id FROM machines AS m WHERE m.license_id = l.id AND m.fingerprint = ?1 "
    "AND m.deactivated_at IS NULL) "
    "FROM licenses AS l JOIN products AS p ON p.id = l.product_id "
    "LEFT JOIN policies AS pol ON pol.id = l.policy_id WHERE l.id = ?2"
)


class LicenseReader:
    """Synchronous primary-key reads on a read-only connection of the event-loop thread."""

    def __init__(self, path: str | Path) -> None:
        uri = Path(path).resolve().as_uri() + "?mode=ro"
        self._conn = sqlite3.connect(uri, uri=True, isolation_level=None)
        self._conn.execute(f"PRAGMA busy_timeout = {READ_BUSY_TIMEOUT_MS}")
        self._conn.execute("PRAGMA query_only = 1")

    def close(self) -> None:
        self._conn.close()

    def view(self, license_id: str, fingerprint_hash: str | None = None) -> LicenseView | None:
        row = self._conn.execute(_VIEW_SQL, (fingerprint_hash, license_id)).fetchone()
        if row is None:
            return None
        return LicenseView(
            id=row[0],
            product_id=row[1],
            product_slug=row[2],
            status=row[3],
            issued_at=row[4],
            expires_at=row[5],
            is_trial=bool(row[6]),
            # Most licenses carry none: "[]" needs no decoding and no bounds check.
            entitlements=()
            if row[7] == "[]"
            else tuple(inputs.shown_json("license", row[0], "entitlements", row[7], [])),
            max_machines=row[8],
            grace_seconds=row[9],
            fingerprint_hash=row[10],
            machine_id=row[11],
        )

    def active_seats(self, license_id: str) -> int:
        return self._conn.execute(store_machines.ACTIVE_SEATS_SQL, (license_id,)).fetchone()[0]


def iso_time(ts: int | None) -> str | None:
    """Unix seconds as RFC 3339 UTC (`2026-01-31T12:00:00Z`), the form Keysat answers with."""
    if ts is None:
        return None
    # time.gmtime is a quarter of the cost of a datetime, and this runs twice per validation.
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
