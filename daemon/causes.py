"""Why a boot stops short of serving: each cause the daemon knows, as the safe mode it enters,
in the operator's words (what happened, whether the data is safe, what to do next).

`daemon.boot` raises these; it stays up in safe mode to report them, never exiting into a
crash loop.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import TYPE_CHECKING

from daemon import downgrade
from daemon.migrate.errors import Remedy
from daemon.remedies import startos_remedy, startos_words
from daemon.settings import Settings, SettingsError
from daemon.status import BLOCKED, CRASH_LIMIT, FAILED, BootHistory, Cause

if TYPE_CHECKING:
    from daemon.migrate import MigrateError

log = logging.getLogger("keysmith.boot")


class SafeMode(Exception):
    """A known cause stops the boot short of serving; the daemon stays up to report it."""

    def __init__(self, state: str, cause: Cause) -> None:
        super().__init__(cause.message)
        self.state = state
        self.cause = cause


def refuse_known(settings: Settings, errors: list[SettingsError], history: BootHistory) -> None:
    """Causes known before the database is opened: malformed settings, a crash loop."""
    if errors:
        raise SafeMode(
            FAILED,
            Cause(
                kind="settings",
                message="; ".join(str(e) for e in errors) + ". The database was not opened.",
                remedy=" ".join(e.remedy for e in errors) + " Then restart the service.",
                data_intact=True,
            ),
        )
    if history.crashes_before >= CRASH_LIMIT:
        raise SafeMode(
            FAILED,
            Cause(
                kind="crash_loop",
                message=f"the previous {history.crashes_before} boots ended without a clean stop "
                f"before they had served for {settings.healthy_serving_seconds:g} s (the last: "
                f"{history.last_failure}). To break the crash loop this boot did not open the "
                "database.",
                remedy="read the service logs for what stopped those runs (out of memory, a full "
                "disk, a slow migration killed by a timeout), fix it, then restart the service to "
                "try again; if it happens again, "
                + startos_words((Remedy.INSTALL_PREVIOUS_VERSION, Remedy.RESTORE_BACKUP)),
                data_intact=None,
            ),
        )


def refuse_held(settings: Settings) -> None:
    """A downgrade the owner prepared: the database stays closed until it is installed or
    cancelled (daemon/downgrade.py)."""
    held = downgrade.hold_cause(settings.db_path)
    if held is not None:
        raise SafeMode(BLOCKED, held)


def migrate_cause(e: MigrateError) -> SafeMode:
    """The migrator's typed error as the operator's cause: its own words for what happened and
    whether data is safe (`str(e)`), ours for what to do."""
    from daemon.migrate import Blocked

    remedy = startos_remedy(e.remedies, e.params)
    if isinstance(e, Blocked):
        # Each blocker typed (kind code, remedy codes with parameters) and in our words.
        blockers = [
            {**b.as_json(), "remedy": startos_words(b.remedies, b.params)} for b in e.blockers
        ]
        return SafeMode(
            BLOCKED,
            Cause(
                kind="blocked",
                message=e.what,
                remedy=remedy,
                data_intact=e.data_intact,
                blockers=blockers,
            ),
        )
    return SafeMode(
        FAILED, Cause(kind=e.reason, message=str(e), remedy=remedy, data_intact=e.data_intact)
    )


def is_locked(e: OSError | sqlite3.Error) -> bool:
    from daemon.migrate.reading import is_locked as locked

    return isinstance(e, sqlite3.Error) and locked(e)


def locked(settings: Settings, e: sqlite3.Error) -> SafeMode:
    """Opening the pool found the database locked by another process: the migrator's own
    typed refusal, worded like every other migrator cause."""
    from daemon.migrate import DatabaseLocked

    return migrate_cause(DatabaseLocked(str(settings.db_path.absolute()), str(e)))


def unopenable(settings: Settings, e: OSError | sqlite3.Error) -> SafeMode:
    return SafeMode(
        FAILED,
        Cause(
            kind="database",
            message=f"the database {settings.db_path} could not be opened: "
            f"{type(e).__name__}: {e}.",
            remedy="check that the data volume is mounted, writable and not full, then restart "
            "the service; if the file is damaged, " + startos_words((Remedy.RESTORE_BACKUP,)),
            data_intact=None,
        ),
    )


def port_taken(settings: Settings, e: OSError) -> SafeMode:
    return SafeMode(
        FAILED,
        Cause(
            kind="port",
            message=f"could not listen on {settings.bind}: {e.strerror or e}. The database "
            "was migrated and closed; nothing else was changed.",
            remedy=f"stop the other program using port {settings.bind_port}, or set "
            "KEYSMITH_BIND to a free host:port, then restart the service",
            data_intact=True,
        ),
    )


def unexpected(e: BaseException) -> SafeMode:
    log.error("boot failed with an unexpected error", exc_info=e)
    return SafeMode(
        FAILED,
        Cause(
            kind="exception",
            message=f"the boot failed with an unexpected error: {type(e).__name__}: {e}",
            remedy=startos_remedy((Remedy.REPORT_TO_MAINTAINERS, Remedy.INSTALL_PREVIOUS_VERSION)),
            data_intact=None,
        ),
    )
