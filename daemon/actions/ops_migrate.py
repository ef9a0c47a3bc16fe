"""Actions about the database itself: migration status, the admin key, the pre-upgrade
restore, and the self-heal history. They read the database with the stdlib sqlite3 (no pool,
no service), so they work while the daemon is stopped or in safe mode."""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

from daemon.actions.registry import Action, ActionError, InputError, number, toggle
from daemon.actions.results import Result, Value
from daemon.migrate.plan import Plan
from daemon.migrate.private import create_private
from daemon.settings import Settings

# The daemon could be booting in another container at the same moment; its migrator holds this
# lock while it touches the database, so waiting a little is enough to never restore under it.
RESTORE_LOCK_TIMEOUT = 5.0


# ---- migration-status ---------------------------------------------------------------------


def migration_status(settings: Settings, _: dict[str, Any]) -> Result:
    """The `migrate status` report, with a one-line summary for the action's message."""
    from daemon.cli_migrate import status_report
    from daemon.migrate import MigrateError, inspect
    from daemon.remedies import startos_words
    from daemon.schema import IDEMPOTENT_MIGRATIONS

    if not settings.db_path.exists():
        return Result(
            "Migration status",
            "No database yet: Keysmith creates it when the service starts for the first time.",
        )
    try:
        plan = inspect(settings.db_path, settings.migrations_dir, IDEMPOTENT_MIGRATIONS)
    except MigrateError as error:
        raise ActionError(f"Reading the migration status failed: {error}") from None
    return Result(
        "Migration status",
        _status_summary(plan),
        Value(status_report(plan, startos_words), copyable=True),
    )


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


def admin_credentials(settings: Settings, _: dict[str, Any]) -> Result:
    """The admin API key: the one set by environment, else the one generated on first boot."""
    usage = "Send it as 'Authorization: Bearer <key>' to the /v1/admin/ endpoints. Keep it secret."
    if settings.admin_api_key:
        return _credentials(
            f"Admin API key (set by KEYSMITH_ADMIN_API_KEY). {usage}", settings.admin_api_key
        )
    key = _stored_admin_key(settings.db_path)
    if key is None:
        raise ActionError(
            "No admin API key yet: Keysmith generates one when the service first starts and "
            "finishes its setup. Start the service, wait until its health check is green, then "
            "run this action again."
        )
    return _credentials(f"Admin API key. {usage}", key)


def _credentials(message: str, key: str) -> Result:
    return Result("Admin credentials", message, Value(key, copyable=True, masked=True))


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


def restore_newest_backup(settings: Settings, _: dict[str, Any]) -> Result:
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
    return Result(
        "Backup restored",
        f"Restored the backup taken at {_readable_stamp(newest.created_at)} "
        f"(before the upgrade from schema version {newest.schema_version}).{kept_note} Start the "
        "service; if the upgrade was blocked, install the previous version of Keysmith first.",
        Value(str(newest.path)),
    )


def _restore_error(error: Exception, backup: Path) -> ActionError:
    from daemon.migrate import DatabaseInUse, LockTimeout, MigrateError
    from daemon.remedies import startos_words

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
    # Created owner-only before SQLite opens it: it holds what the database holds (the keys).
    create_private(kept)
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
        create_private(kept)
        shutil.copyfile(db_path, kept)
    return kept


def _readable_stamp(stamp: str) -> str:
    # 20260101T120000123456Z -> 2026-01-01 12:00:00 UTC
    try:
        parsed = time.strptime(stamp[:15], "%Y%m%dT%H%M%S")
    except ValueError:
        return stamp
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", parsed)


# ---- heal-history -------------------------------------------------------------------------


def heal_history(settings: Settings, _: dict[str, Any]) -> Result:
    """The migrator's append-only heal log: when, which migration, the evidence, what was done."""
    from daemon.migrate import MigrateError
    from daemon.migrate import heal_history as read_history
    from daemon.migrate.ledger import HEAL_ACTION_WORDS, HEAL_LOG_BASIS

    try:
        heals = read_history(settings.db_path)
    except MigrateError as error:
        raise ActionError(f"Reading the self-heal history failed: {error}") from None
    if not heals:
        return Result(
            "Self-heal history",
            "No self-heal so far: every migration this database ran matched its file exactly.",
        )
    members = tuple(
        Value(
            heal.evidence,
            name=f"{heal.healed_at} · migration {heal.version}: {HEAL_ACTION_WORDS[heal.action]}",
            description=(
                f"by Keysmith {heal.daemon_version}"
                + (f"; backup taken first: {heal.backup_file}" if heal.backup_file else "")
            ),
            copyable=True,
        )
        for heal in heals
    )
    return Result(
        "Self-heal history",
        f"{len(heals)} entries, newest first. {HEAL_LOG_BASIS}",
        members,
    )


# ---- accept-migration ----------------------------------------------------------------------

ACCEPTED_BY = "the StartOS operator, through the action 'Accept a changed migration'"


def accept_changed_migration(settings: Settings, values: dict[str, Any]) -> Result:
    """The operator's override: today's text of a blocked (modified) migration, as applied."""
    from daemon import __version__
    from daemon.migrate import MigrateError
    from daemon.migrate.accept import accept_migration, acceptance_warning
    from daemon.remedies import startos_words
    from daemon.schema import IDEMPOTENT_MIGRATIONS

    version = values["version"]
    if not values["confirm"]:
        raise InputError(
            f"Turn on 'I understand' to accept migration {version}. Nothing was changed. "
            f"{acceptance_warning(version)}"
        )
    try:
        accepted = accept_migration(
            settings.db_path,
            settings.migrations_dir,
            version,
            idempotent=IDEMPOTENT_MIGRATIONS,
            daemon_version=__version__,
            accepted_by=ACCEPTED_BY,
        )
    except MigrateError as error:
        raise ActionError(
            f"{error} To fix: {startos_words(error.remedies, error.params)}."
        ) from None
    return Result(
        "Migration accepted",
        f"Migration {accepted.version} ({accepted.description}) is now recorded as applied with "
        "today's text; no SQL ran, and the database keeps the schema the earlier text "
        "produced. The heal history lists this acceptance. Start the service.",
        Value(accepted.evidence, copyable=True),
    )


ACTIONS = (
    Action(
        "migration-status",
        "Migration status",
        "Shows every database migration, whether it is applied, and what Keysmith will do about "
        "any difference it finds (heal it, or refuse the upgrade and why).",
        migration_status,
        group="Database",
    ),
    Action(
        "heal-history",
        "Self-heal history",
        "Lists every self-heal of the database: when, which migration, the evidence that made "
        "it safe, what was done, and the backup taken first.",
        heal_history,
        group="Database",
    ),
    Action(
        "admin-credentials",
        "Show admin credentials",
        "Shows the admin API key that Keysmith generated on first start (or the one set for "
        "it), to use as 'Authorization: Bearer' on the /v1/admin/ endpoints.",
        admin_credentials,
    ),
    Action(
        "restore-backup",
        "Restore pre-upgrade backup",
        "Replaces the database with the newest backup Keysmith took before an upgrade changed "
        "it. The current database is kept beside the backups.",
        restore_newest_backup,
        warning="Changes made since that upgrade (new licenses, activations, sales) are lost "
        "from the live database. Use this after a failed or unwanted upgrade, then install the "
        "previous version if the upgrade was blocked.",
        allowed_statuses="only-stopped",
        group="Database",
    ),
    Action(
        "accept-migration",
        "Accept a changed migration",
        "For an upgrade refused because a migration's text changed since it was applied, and "
        "the change was deliberate: records today's text of that migration as applied, "
        "without running it. Refused for any migration that is not blocked that way.",
        accept_changed_migration,
        warning="The new text is NOT run: the database keeps the schema the earlier text "
        "produced. Use this only when the database already has what the new text describes "
        "(for example, you made the change by hand); otherwise install the previous version "
        "or restore the pre-upgrade backup instead.",
        allowed_statuses="only-stopped",
        group="Database",
        input=(
            number(
                "version",
                "Migration version",
                "The number of the blocked migration, as 'Migration status' shows it.",
                minimum=1,
                maximum=2**53 - 1,
                required=True,
            ),
            toggle(
                "confirm",
                "I understand",
                "The new text is recorded as applied without running it.",
                default=False,
            ),
        ),
    ),
)
