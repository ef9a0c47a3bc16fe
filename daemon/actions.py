"""StartOS actions: `python -m daemon action NAME`, declared in manifest.yaml under `actions`.

StartOS shows an action's stdout, which must be one JSON object
`{"version": "0", "message", "value", "copyable", "qr"}`; a non-zero exit is shown as an error
whose text is stderr. So every outcome here is either that object on stdout and exit 0, or an
operator message on stderr and exit 1: never a traceback.

The actions run in a fresh container with the data volume mounted (`inject: false`), so they
read the settings from the same environment as the daemon and never talk to it over HTTP.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from daemon.migrate.plan import Plan
from daemon.settings import Settings, SettingsError

EXIT_OK, EXIT_ERROR = 0, 1
# The daemon could be booting in another container at the same moment; its migrator holds this
# lock while it touches the database, so waiting a little is enough to never restore under it.
RESTORE_LOCK_TIMEOUT = 5.0
# `migrate status` reads every migration file and the ledger; far below this on any real data.


class ActionError(Exception):
    """An action that could not do its job; the message is shown to the operator as is."""


@dataclass(frozen=True)
class ActionResult:
    message: str
    value: str | None = None
    copyable: bool = False
    qr: bool = False

    def as_json(self) -> str:
        return json.dumps(
            {
                "version": "0",
                "message": self.message,
                "value": self.value,
                "copyable": self.copyable,
                "qr": self.qr,
            }
        )


def action_main(name: str) -> int:
    """Run the action `name`; print its result JSON (exit 0) or an error on stderr (exit 1)."""
    action = ACTIONS.get(name)
    if action is None:
        known = ", ".join(sorted(ACTIONS))
        print(f"unknown action {name!r}; known actions: {known}", file=sys.stderr)
        return EXIT_ERROR
    try:
        settings = Settings.from_env()
        result = action(settings)
    except (ActionError, SettingsError) as error:
        print(str(error), file=sys.stderr)
        return EXIT_ERROR
    print(result.as_json())
    return EXIT_OK


# ---- migration-status ---------------------------------------------------------------------


def migration_status(settings: Settings) -> ActionResult:
    """The `migrate status` report, with a one-line summary for the action's message."""
    from daemon.boot import startos_words
    from daemon.cli_migrate import status_report
    from daemon.migrate import MigrateError, inspect
    from daemon.schema import IDEMPOTENT_MIGRATIONS

    if not settings.db_path.exists():
        return ActionResult(
            "No database yet: Keysmith creates it when the service starts for the first time."
        )
    try:
        plan = inspect(settings.db_path, settings.migrations_dir, IDEMPOTENT_MIGRATIONS)
    except MigrateError as error:
        raise ActionError(f"Reading the migration status failed: {error}") from None
    return ActionResult(_status_summary(plan), status_report(plan, startos_words), copyable=True)


def _status_summary(plan: Plan) -> str:
    if plan.blockers:
        versions = ", ".join(str(b.version) for b in plan.blockers)
        return (
            f"Upgrade blocked at migration {versions}; nothing was changed and your data is "
            "intact. The report says why and what to do."
        )
    pending = sum(1 for f in plan.findings if f.state == "pending")
    to_heal = [str(f.version) for f in plan.findings if f.action in ("restamp", "rerun")]
    schema = plan.schema_version
    parts = [f"Schema version {schema if schema is not None else 'none'}"]
    parts.append(f"{pending} migration(s) pending" if pending else "nothing pending")
    if to_heal:
        parts.append(f"drift in {', '.join(to_heal)} will be healed at the next start")
    return "; ".join(parts) + "."


# ---- admin-credentials --------------------------------------------------------------------


def admin_credentials(settings: Settings) -> ActionResult:
    """The admin API key: the one set by environment, else the one generated on first boot."""
    usage = "Send it as 'Authorization: Bearer <key>' to the /v1/admin/ endpoints. Keep it secret."
    if settings.admin_api_key:
        return ActionResult(
            f"Admin API key (set by KEYSMITH_ADMIN_API_KEY). {usage}",
            settings.admin_api_key,
            copyable=True,
        )
    key = _stored_admin_key(settings.db_path)
    if key is None:
        raise ActionError(
            "No admin API key yet: Keysmith generates one when the service first starts and "
            "finishes its setup. Start the service, wait until its health check is green, then "
            "run this action again."
        )
    return ActionResult(f"Admin API key. {usage}", key, copyable=True)


def _stored_admin_key(db_path: Path) -> str | None:
    if not db_path.exists():
        return None
    try:
        # Read-only: this action must never create or change anything.
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5.0)
        try:
            row = conn.execute("SELECT value FROM settings WHERE key = 'admin_api_key'").fetchone()
        finally:
            conn.close()
    except sqlite3.OperationalError as error:
        if "no such table" in str(error):
            return None  # the schema is not created yet
        raise ActionError(
            f"Cannot read the admin key from {db_path} ({error}). Nothing was changed."
        ) from None
    except sqlite3.DatabaseError as error:
        raise ActionError(
            f"The database {db_path} cannot be read ({error}). Nothing was changed; restore a "
            "backup with the action 'Restore pre-upgrade backup' or from a StartOS backup."
        ) from None
    return row[0] if row and row[0] else None


# ---- restore-backup -----------------------------------------------------------------------


def restore_newest_backup(settings: Settings) -> ActionResult:
    """Put back the newest pre-upgrade backup, keeping the current database beside it."""
    from daemon.migrate.backup import backups_dir, list_backups, restore_backup
    from daemon.migrate.lock import UsersLock, migration_lock

    db_path = settings.db_path
    backups = list_backups(db_path)
    if not backups:
        raise ActionError(
            f"There is no pre-upgrade backup in {backups_dir(db_path)}: Keysmith makes one only "
            "before an upgrade runs migration SQL. Nothing was changed. To go back further, "
            "restore the service from a StartOS backup."
        )
    newest = backups[0]
    kept: Path | None = None
    users = UsersLock(db_path)
    try:
        with migration_lock(db_path, timeout=RESTORE_LOCK_TIMEOUT):
            # A running daemon has the database open: restoring under it would lose its writes.
            users.take_exclusive("restore a backup")
            kept = _keep_current(db_path, backups_dir(db_path))
            restore_backup(db_path, newest.path, users)
    except Exception as error:
        # The database was not replaced, so the copy of it is only clutter.
        if kept is not None:
            kept.unlink(missing_ok=True)
        raise _restore_error(error, newest.path) from None
    finally:
        users.release()
    kept_note = f" The database it replaced is kept as {kept.name}." if kept else ""
    return ActionResult(
        f"Restored the backup taken at {_readable_stamp(newest.created_at)} "
        f"(before the upgrade from schema version {newest.schema_version}).{kept_note} Start the "
        "service; if the upgrade was blocked, install the previous version of Keysmith first.",
        str(newest.path),
    )


def _restore_error(error: Exception, backup: Path) -> ActionError:
    from daemon.boot import startos_words
    from daemon.migrate import DatabaseInUse, LockTimeout, MigrateError

    if isinstance(error, LockTimeout | DatabaseInUse):
        return ActionError(
            "The database is being migrated, or the service has it open, right now. Nothing "
            "was changed. Stop the service, then run this action again."
        )
    if isinstance(error, MigrateError):
        return ActionError(f"{error} To fix: {startos_words(error.remedies, error.params)}.")
    if isinstance(error, sqlite3.DatabaseError):
        return ActionError(
            f"The backup {backup.name} cannot be read as a database ({error}). Nothing was "
            "changed. Restore the service from a StartOS backup instead."
        )
    if isinstance(error, OSError):
        return ActionError(
            f"Restoring {backup.name} failed ({error}). The database was not replaced. Check "
            "the free space on the data volume, then run this action again."
        )
    # The swap itself is one atomic rename, the last step: any failure before it left the
    # database as it was.
    return ActionError(
        f"Restoring {backup.name} failed ({type(error).__name__}: {error}). The database was "
        "not replaced. Read the service logs, then run this action again."
    )


def _keep_current(db_path: Path, folder: Path) -> Path | None:
    """Copy the database about to be replaced, so a restore can itself be undone."""
    if not db_path.exists():
        return None
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    # Not the pre-upgrade naming: it must never be picked as "the newest pre-upgrade backup".
    kept = folder / f"{db_path.stem}-{stamp}-replaced-by-restore.sqlite3"
    try:
        # Read-write on purpose: a WAL left by a crash is recovered into the copy.
        source = sqlite3.connect(db_path, timeout=5.0)
        target = sqlite3.connect(kept)
        try:
            source.backup(target)  # consistent, and includes what is still in the WAL
        finally:
            target.close()
            source.close()
    except sqlite3.DatabaseError:
        # A damaged database cannot be read page by page; keep its raw bytes instead.
        kept.unlink(missing_ok=True)
        shutil.copyfile(db_path, kept)
    return kept


def _readable_stamp(stamp: str) -> str:
    # 20260101T120000123456Z -> 2026-01-01 12:00:00 UTC
    try:
        parsed = time.strptime(stamp[:15], "%Y%m%dT%H%M%S")
    except ValueError:
        return stamp
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", parsed)


ACTIONS: dict[str, Callable[[Settings], ActionResult]] = {
    "migration-status": migration_status,
    "admin-credentials": admin_credentials,
    "restore-backup": restore_newest_backup,
}
