"""Everything that can go wrong in a migration run, each worded for the operator who reads it.

Every error says what happened, whether the data is intact, and what to do next. `reason` is a
short stable label (for metrics and scripts); `remedy` is the action to take.
"""

from __future__ import annotations

from collections import namedtuple

# Worded for any host; the StartOS layer (daemon/boot.py) names its action for it.
RESTORE_HINT = "restore the pre-upgrade backup kept in backups/ beside the database"
PREVIOUS_VERSION_HINT = "install the previous version of Keysmith"


class MigrateError(Exception):
    """Base of every migrator error. `str(e)` is the full operator message."""

    reason = "error"

    def __init__(
        self,
        what: str,
        *,
        remedy: str,
        safety: str = "Nothing was changed: your data is intact.",
        data_intact: bool = True,
    ) -> None:
        self.what = what
        self.remedy = remedy
        self.safety = safety
        self.data_intact = data_intact
        super().__init__(self.message())

    def message(self) -> str:
        return f"{self.what} {self.safety} To fix: {self.remedy}."


class SourceError(MigrateError):
    """The migrations folder itself is unusable (bad name, duplicate, unreadable file)."""

    reason = "source_error"

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        super().__init__(
            f"The migrations folder is not usable: {path}: {problem}.",
            remedy=f"{PREVIOUS_VERSION_HINT}; this release ships a broken migrations folder",
        )


class DatabaseUnreadable(MigrateError):
    """The database file cannot be opened or read as SQLite."""

    reason = "db_unreadable"

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(
            f"The database file {path} cannot be read as SQLite ({detail}).",
            remedy=f"{RESTORE_HINT}, or restore your last full backup of the service",
            safety="Keysmith did not write to it, but the file itself is damaged or is not a "
            "Keysmith database.",
            data_intact=False,
        )


class StorageError(MigrateError):
    """The data volume refuses writes (read-only, full, gone)."""

    reason = "storage_error"

    def __init__(self, folder: str, detail: str) -> None:
        super().__init__(
            f"Keysmith cannot write to the data volume at {folder} ({detail}), so it cannot "
            "upgrade the database.",
            remedy="make sure the data volume is mounted writable and has free space, then "
            "restart Keysmith",
        )


class LockTimeout(MigrateError):
    """Another process held the migration lock for longer than we were willing to wait."""

    reason = "lock_timeout"

    def __init__(self, lock_path: str, waited: float, holder: str) -> None:
        super().__init__(
            f"Another process ({holder}) is migrating this database; gave up waiting for "
            f"{lock_path} after {waited:.0f} s.",
            remedy="wait for the other process to finish, then start Keysmith again",
        )


class BackupRefused(MigrateError):
    """The pre-migration backup could not be taken, so no SQL was run."""

    reason = "backup_refused"

    def __init__(self, what: str) -> None:
        super().__init__(
            f"Could not take the backup required before migrating: {what}.",
            remedy="free disk space on the data volume (old files in backups/ can go), "
            "then restart Keysmith",
        )


class RestoreRefused(MigrateError):
    """A backup chosen for restore is not a sound SQLite database; the current one is kept."""

    reason = "restore_refused"

    def __init__(self, backup: str, verdict: str) -> None:
        super().__init__(
            f"The backup {backup} failed its integrity check ({verdict}) and was not restored.",
            remedy="choose an older backup, or restore your last full backup of the service",
        )


class Interrupted(MigrateError):
    """Raised by a progress callback to stop a run between two steps (a shutdown request).
    Every step already taken is complete; the rest runs at the next start."""

    reason = "interrupted"

    def __init__(self) -> None:
        super().__init__(
            "The upgrade was stopped between two migrations because Keysmith is shutting down.",
            remedy="nothing: the remaining migrations run at the next start",
            safety="Every migration already applied is complete: your data is intact.",
        )


class MigrationFailed(MigrateError):
    """A migration's SQL failed; its transaction was rolled back (or the backup restored)."""

    reason = "sql_error"

    def __init__(self, version: int, description: str, detail: str, *, restored: bool) -> None:
        self.version = version
        undone = "the backup taken before it was restored" if restored else "it was rolled back"
        super().__init__(
            f"Migration {version} ({description}) failed and {undone} "
            f"(while executing migration {version}: {detail}).",
            remedy=f"{PREVIOUS_VERSION_HINT} and report this error to the maintainers",
            safety="The database is as it was before this migration: your data is intact.",
        )


class Blocker(namedtuple("Blocker", "version description finding remedy")):
    """One version the migrator refuses to touch, with why and what the operator should do."""

    __slots__ = ()

    def line(self) -> str:
        return f"migration {self.version} ({self.description}): {self.finding}"


class Blocked(MigrateError):
    """The plan refuses at least one version. Raised before anything is changed."""

    reason = "blocked"

    def __init__(self, blockers: list[Blocker]) -> None:
        self.blockers = blockers
        remedies = list(dict.fromkeys(b.remedy for b in blockers))
        findings = "; ".join(b.line() for b in blockers)
        super().__init__(
            f"Keysmith refused to migrate the database: {findings}.",
            remedy="; or ".join(remedies),
        )
