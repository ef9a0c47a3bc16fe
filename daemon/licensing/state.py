"""The validation hot path's memory: what makes `POST /v1/validate` cheap and still exact.

A naive validate pays three things per call: an Ed25519 verify (~60 us), a hop to the
aiosqlite thread (~27 us) and a primary-key select (~3 us). This module removes all three
from the common call without weakening any answer:

* `VerifiedKeys` remembers, per exact key string, the outcome of parsing and verifying it:
  the payload, or the signature failure. Both are pure functions of the string and the
  issuer key, so a remembered outcome is exactly what a fresh verify would say. A string
  never seen before is always fully parsed and verified. The map is bounded (oldest entries
  are dropped first), so hostile traffic costs memory only up to the bound. Format errors
  are not remembered: parsing is cheap and garbage should not evict real keys.

* `LicenseBook` holds, for every license, the fields validation reads (status, expiry,
  product slug, seat limit, signed fingerprint binding) and its active machines, loaded
  once at start. It is not a cache that can go stale: the service changes it only in the
  code path of each write, right after that write's transaction commits, and every write
  that can change a license or a machine goes through the service (the daemon is the only
  writer of the licensing tables while it serves). Event-loop ordering then gives the
  guarantee the API promises: once `revoke` has answered, the very next validation sees
  the revocation. Entries are replaced, never edited in place, so a reader never sees a
  half-applied change. A view also copies the product slug and the policy's seat limit;
  the API offers no route that edits either, and one that ever does must refresh the views
  of the licenses it affects, in the same way.

Only a validation that has to claim a seat (a fingerprint the license has not seen) leaves
this fast path and writes to the database. Validating on a known machine does not refresh
its `last_seen_at` (that would put a write on every call); heartbeat and activate do.
The one other writer of the file, restoring a backup, is done with the daemon stopped, and
the next start loads the book from the restored database.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from daemon.licensing import keys

DEFAULT_CACHE_SIZE = 50_000


class VerifiedKeys:
    """A bounded map from key strings to their verified payload or signature failure."""

    def __init__(self, public: Ed25519PublicKey, capacity: int = DEFAULT_CACHE_SIZE) -> None:
        self._public = public
        self._capacity = capacity
        self._outcomes: dict[str, keys.KeyPayload | keys.KeySignatureError] = {}

    def __len__(self) -> int:
        return len(self._outcomes)

    def payload_of(self, key: object) -> keys.KeyPayload:
        """The authentic payload of `key`. Raises KeyFormatError or KeySignatureError."""
        outcome = self._outcomes.get(key) if isinstance(key, str) else None
        if outcome is None:
            outcome = self._verify(key)
        if isinstance(outcome, keys.KeySignatureError):
            raise outcome
        return outcome

    def _verify(self, key: object) -> keys.KeyPayload | keys.KeySignatureError:
        try:
            outcome: keys.KeyPayload | keys.KeySignatureError = keys.verify_key(self._public, key)
        except keys.KeySignatureError as error:
            outcome = error
        assert isinstance(key, str)  # verify_key refused anything else as a format error
        if len(self._outcomes) >= self._capacity:
            # Dicts keep insertion order: drop the oldest entry.
            del self._outcomes[next(iter(self._outcomes))]
        self._outcomes[key] = outcome
        return outcome


@dataclass(frozen=True, slots=True)
class LicenseView:
    """What validation needs to know about one license. Replaced whole on every change."""

    id: str
    product_id: str
    product_slug: str
    status: str
    issued_at: int
    expires_at: int | None
    is_trial: bool
    entitlements: tuple[str, ...]
    max_machines: int
    fingerprint_hash: str | None
    # The two times as the API shows them, formatted once here instead of on every call.
    issued_at_text: str
    expires_at_text: str | None
    # fingerprint hash (hex) -> machine id, active machines only.
    machines: MappingProxyType[str, str] = field(default_factory=lambda: MappingProxyType({}))


class LicenseBook:
    """Every license's validation view, keyed by license id."""

    def __init__(self) -> None:
        self._views: dict[str, LicenseView] = {}

    def __len__(self) -> int:
        return len(self._views)

    def get(self, license_id: str) -> LicenseView | None:
        return self._views.get(license_id)

    def put(self, view: LicenseView) -> None:
        self._views[view.id] = view

    def load(self, licenses: Iterable[Any], machines: Iterable[Any]) -> None:
        """Fill the book from `store.all_licenses` and `store.all_active_machines` rows."""
        by_license: dict[str, dict[str, str]] = {}
        for machine in machines:
            by_license.setdefault(machine["license_id"], {})[machine["fingerprint"]] = machine["id"]
        views = {}
        for row in licenses:
            view = view_from_row(row, by_license.get(row["id"], {}))
            views[view.id] = view
        self._views = views


def view_from_row(row: Any, machines: dict[str, str]) -> LicenseView:
    """A LicenseView from a `store.LICENSE_COLUMNS` row and its active machines."""
    return LicenseView(
        id=row["id"],
        product_id=row["product_id"],
        product_slug=row["product_slug"],
        status=row["status"],
        issued_at=row["issued_at"],
        expires_at=row["expires_at"],
        is_trial=bool(row["is_trial"]),
        entitlements=tuple(json.loads(row["entitlements"])),
        max_machines=row["max_machines"],
        fingerprint_hash=row["fingerprint_hash"],
        issued_at_text=iso_time(row["issued_at"]),
        expires_at_text=iso_time(row["expires_at"]),
        machines=MappingProxyType(dict(machines)),
    )


def iso_time(ts: int | None) -> str | None:
    """Unix seconds as RFC 3339 UTC (`2026-01-31T12:00:00Z`), the form Keysat answers with."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
