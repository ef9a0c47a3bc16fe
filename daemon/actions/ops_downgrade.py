"""The two actions of a downgrade to Keysmith 0.1 (see daemon/downgrade.py for why StartOS
needs them): prepare it (revert the schema, backup first, and hold this version), or cancel."""

from __future__ import annotations

from typing import Any

from daemon import downgrade
from daemon.actions.registry import Action, ActionError
from daemon.actions.results import Result, Value
from daemon.settings import Settings


def prepare(settings: Settings, _: dict[str, Any]) -> Result:
    """Revert the schema to what 0.1.0 knows (a backup first) and hold this version."""
    from daemon import __version__
    from daemon.migrate import MigrateError
    from daemon.migrate.revert import revert_migrations
    from daemon.remedies import startos_words

    if not settings.db_path.exists():
        raise ActionError(
            "There is no database yet, so there is nothing to prepare: install Keysmith "
            f"{downgrade.OLDER_RELEASE} directly. Nothing was changed."
        )
    try:
        outcome = revert_migrations(
            settings.db_path,
            settings.migrations_dir,
            daemon_version=__version__,
            target=downgrade.OLDER_SCHEMA,
        )
    except MigrateError as error:
        raise ActionError(
            f"{error} To fix: {startos_words(error.remedies, error.params)}."
        ) from None
    backup = str(outcome.backup.path) if outcome.backup else None
    downgrade.write_marker(
        settings.db_path,
        downgrade.prepared_record(outcome.schema_version, backup, list(outcome.reverted)),
    )
    return Result(
        "Downgrade prepared",
        f"The database is at schema v{outcome.schema_version}, the one Keysmith "
        f"{downgrade.OLDER_RELEASE} knows; every license, product, policy and machine is kept. "
        f"Next: install Keysmith {downgrade.OLDER_RELEASE} now. Until then this version stays "
        f"in safe mode if started; to stay on it, run '{downgrade.CANCEL_NAME}'.",
        _details(outcome.plan.discards, backup),
    )


def _details(discards: dict[int, tuple[str, ...]], backup: str | None) -> tuple[Value, ...]:
    lines = [f"migration {v}: {'; '.join(what)}" for v, what in sorted(discards.items())]
    return (
        Value(
            "\n".join(lines) or "nothing (no newer migration was applied)",
            name="Discarded",
            description="What only this version holds, removed with its schema",
        ),
        Value(
            backup or "none needed: nothing was reverted",
            name="Backup taken first",
            description="The database as it was before the revert",
            copyable=True,
        ),
    )


def cancel(settings: Settings, _: dict[str, Any]) -> Result:
    """End the hold: the next start upgrades the database again (backup first, as always)."""
    if not downgrade.remove_marker(settings.db_path):
        raise ActionError(
            f"No downgrade to Keysmith {downgrade.OLDER_RELEASE} is prepared, so there is "
            "nothing to cancel. Nothing was changed."
        )
    return Result(
        "Downgrade cancelled",
        "Start the service: this version upgrades the database again (with a backup first), "
        "and what the preparation discarded stays discarded; restore it from the backup the "
        "preparation took or a StartOS backup if you need it.",
    )


ACTIONS = (
    Action(
        "prepare-downgrade",
        downgrade.PREPARE_NAME,
        f"Before installing Keysmith {downgrade.OLDER_RELEASE} over this version: takes a "
        f"backup, then reverts the database schema to the one {downgrade.OLDER_RELEASE} knows "
        f"(v{downgrade.OLDER_SCHEMA}), keeping every license, product, policy and machine. "
        "This version then stays in safe mode until you install the older one or cancel.",
        prepare,
        warning="What only this version can hold is discarded (for example scoped API keys, "
        "webhooks, seat limits and grace periods, buyer emails; the result lists each "
        f"migration's share). A backup is taken first. Install Keysmith "
        f"{downgrade.OLDER_RELEASE} right after this.",
        allowed_statuses="only-stopped",
        group="Database",
    ),
    Action(
        "cancel-downgrade",
        downgrade.CANCEL_NAME,
        "Ends a prepared downgrade: the next start of this version upgrades the database "
        "again, with a backup first.",
        cancel,
        allowed_statuses="only-stopped",
        group="Database",
    ),
)
