"""What the use cases of the licensing service share, each handed to those that need it: the
bounds, the issuer key (`Signer`), the clock and the one way to write an audit row (`Audit`).

Every write is one transaction (`pool.transaction()`), and an admin write adds its audit row
(`record`) in that same transaction. Writes of this process are serialised by one asyncio lock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal

from aiosqlite import Connection

from daemon import settings
from daemon.licensing import keys, store
from daemon.licensing.state import VerifiedKeys

# Who the audit log names for an admin write: the HTTP admin API, or a StartOS action.
AdminActor = Literal["admin", "action"]
Actor = Literal["admin", "action", "public", "system"]
# The credential an admin write came with, when the caller knows it: the console's session,
# the master admin key (named by its SHA-256, Keysat's actor_hash), or an API key (named by
# its id, which is not a secret).
ActorKind = Literal["console", "master_key", "api_key"]
_acting: ContextVar[str | None] = ContextVar("keysmith_acting", default=None)


@contextlib.contextmanager
def acting_as(kind: ActorKind, identity: str | None = None) -> Iterator[None]:
    """Audit the writes made inside as `kind`, or `kind:<identity>` (`api_key:<id>`)."""
    token = _acting.set(kind if identity is None else f"{kind}:{identity}")
    try:
        yield
    finally:
        _acting.reset(token)


@dataclass(frozen=True, slots=True)
class Limits:
    """The memory and history bounds of the service (`daemon.settings` documents each), and
    the networks beyond the public internet that webhooks may go to.

    Deactivated machines beyond `machine_history` per license are deleted in the transaction
    that deactivates another, so activate/deactivate churn cannot grow the table; settled
    webhook deliveries beyond `webhook_history` per endpoint, in the one that settles another.
    """

    key_cache_entries: int = settings.DEFAULT_KEY_CACHE_ENTRIES
    key_cache_bytes: int = settings.DEFAULT_KEY_CACHE_BYTES
    machine_history: int = settings.DEFAULT_MACHINE_HISTORY
    webhook_history: int = settings.DEFAULT_WEBHOOK_HISTORY
    # Private networks webhooks may be delivered to (the operator's allowance).
    webhook_allow_networks: tuple[settings.Network, ...] = ()
    # Active machines a license with unlimited seats may have (0: no ceiling).
    unlimited_seats: int = settings.DEFAULT_UNLIMITED_SEATS
    # The API's total of wrong discount codes a minute, and the days within which a code a
    # guesser would find at that rate is called weak to the seller.
    wrong_codes_per_minute: int = settings.DEFAULT_WRONG_CODES_PER_MINUTE
    weak_code_days: int = settings.DEFAULT_WEAK_CODE_DAYS

    @classmethod
    def of(cls, configured: settings.Settings) -> Limits:
        """The bounds the operator configured (the daemon's boot and the actions)."""
        # Each bound has the name of its setting.
        return cls(**{f.name: getattr(configured, f.name) for f in dataclasses.fields(cls)})


async def record(
    conn: Connection,
    actor: str,
    action: str,
    subject: str,
    detail: dict[str, Any],
    now: int,
) -> None:
    """The one audit row of a write, in the write's own transaction."""
    await store.audit(conn, actor=actor, action=action, subject=subject, detail=detail, now=now)


def now() -> int:
    return int(time.time())


class Signer:
    """The issuer key new licenses are signed with and the cache presented keys are verified
    by: one object for the use cases that sign (licenses, tiers), verify (validation, through
    `verified`) and replace the key (operator), so an imported key is used by all at once."""

    def __init__(self, issuer: keys.IssuerKey, issuer_id: int, verified: VerifiedKeys) -> None:
        self.issuer = issuer
        self.issuer_id = issuer_id
        self.verified = verified
        self.public_key_pem = issuer.public_pem()

    def use(self, issuer: keys.IssuerKey, issuer_id: int) -> None:
        """Sign and verify with `issuer` from now on (an imported key, no license yet)."""
        self.issuer, self.issuer_id = issuer, issuer_id
        self.verified.rekey(issuer.public)
        self.public_key_pem = issuer.public_pem()


@dataclass(frozen=True, slots=True)
class Audit:
    """How a use case writes the audit row of an admin write, in the write's transaction."""

    # The service's own actor: `admin` for the daemon, `action` for a StartOS action.
    actor: AdminActor

    @property
    def acting(self) -> str:
        """Who the audit row of a write names: the credential it came with, else `actor`."""
        return _acting.get() or self.actor

    async def __call__(
        self, conn: Connection, action: str, subject: str, detail: dict[str, Any], at: int
    ) -> None:
        await record(conn, self.acting, action, subject, detail, at)
