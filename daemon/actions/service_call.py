"""Running one licensing operation from an action: the same service the HTTP admin API uses.

An action is its own process, often while the daemon serves from the same file in another
one. It opens a small pool with `daemon.db`, opens `Licensing` (audit actor "action"), awaits
one method, and closes. Each service write is one transaction, so a refused or failed write
leaves the database as it was.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from daemon.actions.registry import NOTHING_CHANGED, ActionError
from daemon.licensing.answers import plain
from daemon.licensing.errors import LicensingError, NotFound
from daemon.migrate.errors import LockTimeout
from daemon.settings import Settings

if TYPE_CHECKING:
    from daemon.licensing.service import AdminActor, Licensing

T = TypeVar("T")
AUDIT_ACTOR: AdminActor = "action"
# One connection for reads, one for a write: an action runs one operation at a time.
POOL_SIZE = 2
# A backup being restored holds the database exclusively for seconds at most; past this the
# action gives up with a clear message rather than hang the StartOS action dialog.
LOCK_TIMEOUT = 10.0


def call(settings: Settings, operation: Callable[[Licensing], Awaitable[T]]) -> T:
    """Await `operation(service)` on the live database; any refusal becomes an ActionError."""
    _require_current_schema(settings)
    try:
        return asyncio.run(_call(settings, operation))
    except NotFound as error:
        raise ActionError(f"There is no {error.message}. {NOTHING_CHANGED}") from None
    except LicensingError as error:
        raise ActionError(f"{_sentence(error.message)}. {NOTHING_CHANGED}") from None
    except LockTimeout:
        raise _locked() from None
    except (sqlite3.Error, OSError) as error:
        raise ActionError(
            f"The database {settings.db_path} could not be used ({error}). The operation was "
            "not applied and your data is intact. Check that the service's health check is "
            "green, then run this action again."
        ) from None


@contextmanager
def users_lock_shared(db_path: Path) -> Iterator[None]:
    """Hold the database's users lock shared, as the pool of `call` does, for an action that
    writes with a connection of its own: a restore (which holds it exclusively) then never
    replaces the file under its write, which would drop it once committed."""
    from daemon.migrate.lock import UsersLock

    users = UsersLock(db_path)
    try:
        users.take_shared(LOCK_TIMEOUT)
    except LockTimeout:
        users.release()
        raise _locked() from None
    try:
        yield
    finally:
        users.release()


def _locked() -> ActionError:
    return ActionError(
        f"The database is being restored from a backup or upgraded by another process, so "
        f"it could not be opened within {LOCK_TIMEOUT:g} s. {NOTHING_CHANGED} Wait until the "
        "service's health check is green, then run this action again."
    )


async def _call(settings: Settings, operation: Callable[[Licensing], Awaitable[T]]) -> T:
    from daemon.db import open_pool
    from daemon.licensing.service import Licensing, Limits

    pool = await open_pool(settings.db_path, size=POOL_SIZE, lock_timeout=LOCK_TIMEOUT)
    try:
        await _require_first_start_done(pool)
        # No admin key passed: with the issuer and admin keys in place, opening writes nothing;
        # settling a key from the environment is the daemon's job at its boot, not an action's.
        service = await Licensing.open(pool, actor=AUDIT_ACTOR, limits=Limits.of(settings))
        try:
            # As dicts and lists: an action reads fields by name to write its message.
            return plain(await operation(service))
        finally:
            service.close()
    finally:
        await pool.close()


async def _require_first_start_done(pool: Any) -> None:
    from daemon.licensing import store
    from daemon.licensing.service import ADMIN_KEY_SETTING

    async with pool.connection() as conn:
        issuer = await store.active_issuer_key(conn)
        admin_key = await store.get_setting(conn, ADMIN_KEY_SETTING)
    if issuer is None or admin_key is None:
        raise ActionError(
            "Keysmith has not finished its first start yet (no issuer key or admin key in the "
            "database). Start the service and wait until its health check is green, then run "
            f"this action again. {NOTHING_CHANGED}"
        )


def _require_current_schema(settings: Settings) -> None:
    """Licensing actions work only on a database the daemon has finished upgrading."""
    from daemon.migrate import MigrateError, inspect
    from daemon.schema import IDEMPOTENT_MIGRATIONS

    if not settings.db_path.exists():
        raise ActionError(
            f"No database yet at {settings.db_path}: Keysmith creates it when the service "
            f"starts for the first time. Start the service, then run this action. {NOTHING_CHANGED}"
        )
    try:
        plan = inspect(settings.db_path, settings.migrations_dir, IDEMPOTENT_MIGRATIONS)
    except MigrateError as error:
        raise ActionError(f"Reading the database failed: {error} {NOTHING_CHANGED}") from None
    if plan.blockers:
        raise ActionError(
            "The database upgrade is blocked, so licensing actions are paused; your data is "
            "intact. Run the action 'Migration status' for the cause and the fix. "
            f"{NOTHING_CHANGED}"
        )
    if any(f.state == "pending" for f in plan.findings):
        raise ActionError(
            "The database is not upgraded to this version yet. Start the service (it upgrades "
            "the database first) and wait until its health check is green, then run this "
            f"action again. {NOTHING_CHANGED}"
        )


def _sentence(message: str) -> str:
    return message[:1].upper() + message[1:]
