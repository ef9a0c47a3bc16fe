"""How the database's writes are faring, as the serving pool sees them.

A write that fails because the disk is full (SQLITE_FULL) or because another process held the
write lock past the busy timeout (SQLITE_BUSY) puts the process in a degraded state with that
cause: `/healthz`, `python -m daemon health` and `keysmith_storage_degraded` show it. SQLite
rolls the failed transaction back, so nothing is half-written, and the next write that commits
clears the state by itself: no restart is needed once space returns or the lock is released.
A held lock is also rechecked while no write comes (`Pool.recheck_lock`), so a quiet service
does not report a lock that is long gone.

Knows nothing of HTTP: the API maps a `Fault` to its status code.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from daemon import metrics
from daemon.status import utc_now

log = logging.getLogger("keysmith.storage")


class Fault(StrEnum):
    DISK_FULL = "disk_full"
    BUSY = "database_busy"


# What happened (with whether data is safe) and what to do, for the operator.
_OPERATOR_WORDS: dict[Fault, tuple[str, str]] = {
    Fault.DISK_FULL: (
        "the disk holding the database is full, so every write is refused. Your data is "
        "intact: a refused write changes nothing, and validations that need no new seat "
        "still answer",
        "free space on the data volume (or make it larger); Keysmith recovers by itself at the "
        "next write that succeeds, without a restart",
    ),
    Fault.BUSY: (
        "another process held the database's write lock past the busy timeout, so writes are "
        "refused. Your data is intact: a refused write changes nothing",
        "stop the other program writing to the database (a sqlite3 shell, a backup tool, a "
        "second Keysmith); Keysmith notices within seconds that the lock is free and "
        "recovers by itself, without a restart",
    ),
}


def fault_of(error: BaseException) -> Fault | None:
    """The storage fault behind a database error, or None when it is something else."""
    code = getattr(error, "sqlite_errorcode", None)
    if not isinstance(error, sqlite3.Error) or code is None:
        return None
    primary = code & 0xFF  # extended codes (SQLITE_BUSY_SNAPSHOT, ...) keep the primary's bits
    if primary == sqlite3.SQLITE_FULL:
        return Fault.DISK_FULL
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return Fault.BUSY
    return None


@dataclass(frozen=True)
class Degraded:
    fault: Fault
    detail: str  # SQLite's own words
    since: str

    def as_dict(self) -> dict[str, Any]:
        message, remedy = _OPERATOR_WORDS[self.fault]
        return {
            "cause": self.fault.value,
            "message": f"{message} (SQLite: {self.detail})",
            "remedy": remedy,
            "since": self.since,
        }


class StorageHealth:
    """The current degraded state, changed only by write outcomes, logged only on a change."""

    def __init__(self) -> None:
        self._degraded: Degraded | None = None
        metrics.set_storage_degraded(None)

    @property
    def degraded(self) -> Degraded | None:
        return self._degraded

    def write_failed(self, error: BaseException) -> None:
        fault = fault_of(error)
        if fault is None:
            return
        metrics.count_storage_fault(fault.value)
        if self._degraded is not None and self._degraded.fault == fault:
            return
        self._degraded = Degraded(fault, str(error), utc_now())
        metrics.set_storage_degraded(fault.value)
        words = self._degraded.as_dict()
        log.warning(
            f"database writes are failing: {words['message']}",
            extra={"cause": fault.value, "remedy": words["remedy"]},
        )

    def write_succeeded(self) -> None:
        self._recovered("database writes succeed again; no longer degraded")

    def lock_free(self) -> None:
        """The write lock was just taken and let go: a busy fault is over (a full disk is not
        proven over by that, so it waits for a write that commits)."""
        if self._degraded is not None and self._degraded.fault == Fault.BUSY:
            self._recovered("the database's write lock is free again; no longer degraded")

    def _recovered(self, message: str) -> None:
        if self._degraded is None:
            return
        log.info(
            message, extra={"cause": self._degraded.fault.value, "since": self._degraded.since}
        )
        self._degraded = None
        metrics.set_storage_degraded(None)


__all__ = ["Degraded", "Fault", "StorageHealth", "fault_of"]
