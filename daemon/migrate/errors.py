"""Everything that can go wrong in a migration run, as typed values.

Each error says what happened and whether the data is intact, in words that name no product
(the migrator works on any sqlx folder). What to do next is not a sentence but a list of
`Remedy` codes with structured parameters (`params`): the host that runs the migrator words
them for its reader (the daemon for a StartOS operator, the CLI for a shell user).
`reason` is a short stable label for metrics and scripts.
"""

from __future__ import annotations

from collections import namedtuple
from enum import StrEnum

TYPE_CHECKING = False  # typing stays unimported: a no-op run must not pay for it
if TYPE_CHECKING:
    from typing import Literal


class Remedy(StrEnum):
    """What the operator can do about a refusal or a failure; the host renders the words."""

    INSTALL_PREVIOUS_VERSION = "install_previous_version"
    INSTALL_NEWER_VERSION = "install_newer_version"  # param: none (the one that migrated it)
    RESTORE_BACKUP = "restore_backup"  # the pre-migration backup beside the database
    RESTORE_FULL_BACKUP = "restore_full_backup"  # the operator's own backup of the service
    CHOOSE_OLDER_BACKUP = "choose_older_backup"
    FREE_DISK_SPACE = "free_disk_space"  # params: folder
    MAKE_VOLUME_WRITABLE = "make_volume_writable"  # params: folder
    STOP_OTHER_PROCESS = "stop_other_process"  # params: lock_path
    RETRY_OR_STOP_HOLDER = "retry_or_stop_holder"  # params: db (a transaction holds the file)
    WAIT_FOR_OTHER_MIGRATION = "wait_for_other_migration"  # params: holder
    REPORT_TO_MAINTAINERS = "report_to_maintainers"
    RETRY = "retry"  # nothing to fix: the next run carries on
    KEEP_CURRENT_VERSION = "keep_current_version"  # a refused revert: stay where it is
    ACCEPT_CHANGE = "accept_change"  # params: version (the operator's override, last resort)
    CHECK_STATUS = "check_status"  # read the migration status: which versions are blocked
    CHOOSE_APPLIED_TARGET = "choose_applied_target"  # params: applied (versions one may go to)
    REUNITE_WAL = "reunite_wal"  # params: wal (a log whose database was moved away from it)


class Reason(StrEnum):
    """The kind of failure: stable labels for metrics, scripts and the CLI's JSON."""

    ERROR = "error"
    SOURCE_ERROR = "source_error"
    DB_UNREADABLE = "db_unreadable"
    STORAGE_ERROR = "storage_error"
    DISK_FULL = "disk_full"
    LOCK_TIMEOUT = "lock_timeout"
    DATABASE_IN_USE = "database_in_use"
    DATABASE_LOCKED = "database_locked"
    BAD_TARGET = "bad_target"
    BACKUP_REFUSED = "backup_refused"
    RESTORE_REFUSED = "restore_refused"
    INTERRUPTED = "interrupted"
    SQL_ERROR = "sql_error"
    BLOCKED = "blocked"
    NOT_ACCEPTABLE = "not_acceptable"


INTACT = "Nothing was changed: the data is intact."


class MigrateError(Exception):
    """Base of every migrator error. `str(e)` is what happened and whether data is safe; the
    remedies are codes for the host to word."""

    reason = Reason.ERROR
    # A refusal is raised before anything is written: the CLI exits 2 ("nothing was changed").
    refusal = False
    # The migration versions it is about, for scripts (a blocked plan names each blocker).
    versions: tuple[int, ...] = ()

    def __init__(
        self,
        what: str,
        *remedies: Remedy,
        safety: str = INTACT,
        data_intact: bool = True,
        **params: str,
    ) -> None:
        self.what = what
        self.remedies = remedies
        self.params = params
        self.safety = safety
        self.data_intact = data_intact
        super().__init__(f"{what} {safety}")

    def as_json(self) -> dict:
        """The typed result: a stable kind code, the versions, and each remedy as a code with
        its parameters (the host words them; see `remedy_codes`)."""
        return {
            "kind": self.reason,
            "refusal": self.refusal,
            "versions": list(self.versions),
            "data_intact": self.data_intact,
            "remedies": remedy_codes(self.remedies, self.params),
            "blocked": [b.as_json() for b in getattr(self, "blockers", ())],
        }


def remedy_codes(remedies: tuple[Remedy, ...], params: dict[str, str]) -> list[dict]:
    return [{"code": remedy, "params": dict(params)} for remedy in remedies]


class SourceError(MigrateError):
    """The migrations folder itself is unusable (bad name, duplicate, unreadable file)."""

    reason = Reason.SOURCE_ERROR

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        super().__init__(
            f"The migrations folder is not usable: {path}: {problem}. This release ships a "
            "broken migrations folder.",
            Remedy.INSTALL_PREVIOUS_VERSION,
        )


class DatabaseUnreadable(MigrateError):
    """The database file cannot be opened or read as SQLite."""

    reason = Reason.DB_UNREADABLE

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(
            f"The database file {path} cannot be read as SQLite ({detail}).",
            Remedy.RESTORE_BACKUP,
            Remedy.RESTORE_FULL_BACKUP,
            safety="The migrator did not write to it, but the file itself is damaged or is not "
            "a database of this application.",
            data_intact=False,
        )


class StorageError(MigrateError):
    """The data volume refuses writes (read-only, full, gone)."""

    reason = Reason.STORAGE_ERROR

    def __init__(self, folder: str, detail: str) -> None:
        super().__init__(
            f"The migrator cannot write to the data volume at {folder} ({detail}), so the database "
            "cannot be migrated.",
            Remedy.MAKE_VOLUME_WRITABLE,
            folder=folder,
        )


class DiskFull(MigrateError):
    """The data volume is full: SQLite could not create or grow a file it needs beside the
    database (its WAL or shared-memory file), so the database could not even be opened."""

    reason = Reason.DISK_FULL

    def __init__(self, folder: str, free_bytes: int, detail: str, backups: str) -> None:
        super().__init__(
            f"The data volume at {folder} is full ({free_bytes} bytes free), so the database "
            f"could not be opened (SQLite: {detail}).",
            Remedy.FREE_DISK_SPACE,
            safety="Nothing was written: the database file is not damaged; the data is intact.",
            folder=backups,
        )


class LockTimeout(MigrateError):
    """Another process held the migration lock for longer than we were willing to wait."""

    reason = Reason.LOCK_TIMEOUT
    refusal = True

    def __init__(self, lock_path: str, waited: float, holder: str) -> None:
        super().__init__(
            f"Another process ({holder}) is migrating this database; gave up waiting for "
            f"{lock_path} after {waited:.0f} s.",
            Remedy.WAIT_FOR_OTHER_MIGRATION,
            holder=holder,
        )


class DatabaseInUse(MigrateError):
    """A step that may need the backup restored would run while another process has the
    database open: a restore under it would throw away what it writes meanwhile."""

    reason = Reason.DATABASE_IN_USE
    refusal = True

    def __init__(self, lock_path: str, why: str) -> None:
        super().__init__(
            f"Refused to {why}: another process has the database open (it holds {lock_path}). "
            "If this step failed, restoring the backup would discard whatever that process "
            "wrote meanwhile.",
            Remedy.STOP_OTHER_PROCESS,
            lock_path=lock_path,
        )


class DatabaseLocked(MigrateError):
    """Another process holds a write transaction on the database (`BEGIN EXCLUSIVE` or a long
    write) for longer than the busy timeout: nothing was written, no backup is left behind."""

    reason = Reason.DATABASE_LOCKED
    refusal = True

    def __init__(self, db_path: str, detail: str, applied: tuple[int, ...] = ()) -> None:
        done = (
            f" Migration{'s' if len(applied) > 1 else ''} {', '.join(map(str, applied))} "
            "had been applied before it and stay applied; the rest run at the next run."
            if applied
            else ""
        )
        super().__init__(
            f"Another process holds the database {db_path} ({detail}).{done}",
            Remedy.RETRY_OR_STOP_HOLDER,
            safety="Nothing else was changed: the data is intact." if applied else INTACT,
            db=db_path,
        )


class BadTarget(MigrateError):
    """A `--to` that names no version the operation can go to: for a revert an applied
    version, for a run a version in the folder; 0 (no schema) is always one."""

    reason = Reason.BAD_TARGET
    refusal = True

    def __init__(self, target: int, known: list[int], what: str = "an applied version") -> None:
        self.versions = (target,)
        listed = ", ".join(map(str, known)) or "none"
        super().__init__(
            f"Refused: target version {target} is not {what} ({listed}) nor 0 (no schema).",
            Remedy.CHOOSE_APPLIED_TARGET,
            applied=listed,
        )


class BackupRefused(MigrateError):
    """The pre-migration backup could not be taken, so no SQL was run."""

    reason = Reason.BACKUP_REFUSED
    refusal = True

    def __init__(self, what: str, folder: str) -> None:
        super().__init__(
            f"Could not take the backup required before migrating: {what}.",
            Remedy.FREE_DISK_SPACE,
            folder=folder,
        )


class RestoreRefused(MigrateError):
    """A backup chosen for restore is not a sound SQLite database; the current one is kept."""

    reason = Reason.RESTORE_REFUSED

    def __init__(self, backup: str, verdict: str) -> None:
        super().__init__(
            f"The backup {backup} failed its integrity check ({verdict}) and was not restored.",
            Remedy.CHOOSE_OLDER_BACKUP,
            Remedy.RESTORE_FULL_BACKUP,
        )


class OrphanedWal(MigrateError):
    """A restore would put a database where a write-ahead log lies without its database file
    (moved away after a crash): the log may hold committed writes that are not in that file
    yet, and the restore would have to delete it."""

    reason = Reason.RESTORE_REFUSED

    def __init__(self, wal: str, size: int, db_path: str) -> None:
        super().__init__(
            f"Refused to restore over {db_path}: {wal} ({size} bytes) is the write-ahead log of "
            "a database file that is no longer there (moved away after a crash?), and may hold "
            "committed writes that are not in that file yet. Restoring would delete it.",
            Remedy.REUNITE_WAL,
            wal=wal,
        )


class Interrupted(MigrateError):
    """Raised by a progress callback to stop a run between two steps (a shutdown request).
    Every step already taken is complete; the rest runs at the next start."""

    reason = Reason.INTERRUPTED

    def __init__(self) -> None:
        super().__init__(
            "The upgrade was stopped between two migrations because of a shutdown request.",
            Remedy.RETRY,
            safety="Every migration already applied is complete: the data is intact.",
        )


# Where a migration failed: in its own statements, or in recording it as applied afterwards
# (which matters only for a `-- no-transaction` one, whose statements were then all committed).
if TYPE_CHECKING:
    FailedWhile = Literal["executing", "recording"]


class MigrationFailed(MigrateError):
    """A migration's SQL failed. A transactional one was rolled back; a `-- no-transaction` one
    (failing in its statements or in its ledger row after them) had the backup taken before the
    run restored, which also undoes the versions this run applied before it (`undone`; they run
    again next time)."""

    reason = Reason.SQL_ERROR

    def __init__(
        self,
        version: int,
        description: str,
        detail: str,
        *,
        restored_to: int | None = None,
        undone: tuple[int, ...] = (),
        restored: bool = False,
        failed_while: FailedWhile = "executing",
    ) -> None:
        self.version = version
        self.restored = restored
        self.undone = undone
        self.failed_while = failed_while
        during = (
            f"while executing migration {version}"
            if failed_while == "executing"
            else f"while recording migration {version} as applied"
        )
        what = f"Migration {version} ({description}) failed ({during}: {detail})."
        if not restored:
            safety = (
                "It was rolled back: the database is exactly as it was before this migration, "
                "and the data is intact."
            )
        else:
            at = "with no schema yet" if restored_to is None else f"at schema version {restored_to}"
            safety = (
                "It cannot run in a transaction, so the backup taken before this run was "
                f"restored: the database is as it was before this run, {at}, and the data is "
                "intact."
            )
            if failed_while == "recording":
                safety += (
                    f" The statements of migration {version} had all run but could not be "
                    "recorded as applied; the restore undid them, and it will run again at the "
                    "next run."
                )
            if undone:
                listed = ", ".join(map(str, undone))
                many = len(undone) > 1
                safety += (
                    f" Migration{'s' if many else ''} {listed}, applied earlier in this run, "
                    f"{'were' if many else 'was'} undone too and will run again at the next run."
                )
        super().__init__(
            what, Remedy.INSTALL_PREVIOUS_VERSION, Remedy.REPORT_TO_MAINTAINERS, safety=safety
        )


class BlockKind(StrEnum):
    """Why one version is refused: stable codes for scripts and the host's words."""

    MISSING = "missing_from_folder"  # applied, no file: a newer release migrated it
    MODIFIED = "modified"  # applied text differs from the file, no proof it is cosmetic
    DAMAGED_ROW = "damaged_row"  # the ledger's checksum is not a SHA-384
    DIRTY = "dirty"  # recorded as failed
    IRREVERSIBLE = "irreversible"  # a plain .sql migration: no down file by design
    NO_DOWN = "no_down_file"  # an .up.sql whose .down.sql is absent (and none is stored)
    ACCEPTED = "accepted_text"  # its text was accepted without running: the down undoes another
    DOWN_FAILS = "down_would_fail"  # tried on the database in a rolled-back transaction
    UNKNOWN_ORIGIN = "down_of_unknown_origin"  # a stored down text no release of this lineage


class Blocker(namedtuple("Blocker", "version description finding remedies kind")):
    """One version the migrator refuses to touch, with why (`kind`, a BlockKind) and what the
    operator can do (Remedy codes, in order of preference; their parameter is the version)."""

    __slots__ = ()

    def line(self) -> str:
        return f"migration {self.version} ({self.description}): {self.finding}"

    @property
    def params(self) -> dict[str, str]:
        return {"version": str(self.version)}

    def as_json(self) -> dict:
        return {
            "version": self.version,
            "description": self.description,
            "kind": self.kind,
            "finding": self.finding,
            "remedies": remedy_codes(self.remedies, self.params),
        }


class Blocked(MigrateError):
    """The plan refuses at least one version (every one is named). Raised before anything is
    changed. `doing` is the refused operation: "migrate" or "revert"."""

    reason = Reason.BLOCKED
    refusal = True

    def __init__(self, blockers: list[Blocker], doing: str = "migrate") -> None:
        self.blockers = blockers
        self.versions = tuple(b.version for b in blockers)
        remedies = dict.fromkeys(r for b in blockers for r in b.remedies)
        findings = "; ".join(b.line() for b in blockers)
        # The override names the versions it would apply to.
        acceptable = [str(b.version) for b in blockers if Remedy.ACCEPT_CHANGE in b.remedies]
        params = {"version": ", ".join(acceptable)} if acceptable else {}
        super().__init__(f"Refused to {doing} the database: {findings}.", *remedies, **params)


class RevertFailed(MigrateError):
    """A down step's SQL failed. A revert is all or nothing: the backup taken before it was
    restored, undoing its earlier steps too (`restored_to` is the schema version it is back
    at). Only when that restore itself failed (`restore_failed`) may the database be left
    between versions, and the message says where the backup is."""

    reason = Reason.SQL_ERROR

    def __init__(
        self,
        version: int,
        description: str,
        detail: str,
        *,
        backup: str,
        restored_to: int | None = None,
        restore_failed: str | None = None,
    ) -> None:
        self.version = version
        self.restored = restore_failed is None
        at = "with no schema" if restored_to is None else f"at schema version {restored_to}"
        if restore_failed is None:
            safety = (
                f"The backup taken before the revert ({backup}) was restored: the database is as "
                f"it was before the revert, {at}, nothing was reverted, and the data is intact."
            )
            remedies = (Remedy.KEEP_CURRENT_VERSION, Remedy.REPORT_TO_MAINTAINERS)
        else:
            safety = (
                f"Restoring the backup taken before the revert failed too ({restore_failed}), so "
                f"the database may be left between two versions; that backup, with every row "
                f"as it was before the revert, is {backup}."
            )
            remedies = (Remedy.RESTORE_FULL_BACKUP, Remedy.REPORT_TO_MAINTAINERS)
        super().__init__(
            f"Reverting migration {version} ({description}) failed ({detail}).",
            *remedies,
            safety=safety,
            data_intact=restore_failed is None,
        )


class NotAcceptable(MigrateError):
    """The operator asked to accept a migration's text that is not blocked as modified."""

    reason = Reason.NOT_ACCEPTABLE
    refusal = True

    def __init__(self, version: int, why: str) -> None:
        self.version = version
        self.versions = (version,)
        super().__init__(
            f"Refused to accept migration {version}: {why}. Only a migration refused because "
            "its text changed since it was applied can be accepted.",
            Remedy.CHECK_STATUS,
        )
