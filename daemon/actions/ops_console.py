"""The console's password, set from StartOS (or a shell) as an action.

Stored only as an argon2id hash in the database's settings table, with an audit row. Allowed
in every state, a blocked upgrade included: that is when the operator most needs the console's
Upgrades page, and a settings row is no schema change.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from daemon.actions.registry import NOTHING_CHANGED, Action, ActionError, Field
from daemon.actions.results import Result
from daemon.actions.service_call import users_lock_shared
from daemon.settings import CONSOLE_PASSWORD_MAX_LENGTH, CONSOLE_PASSWORD_MIN_LENGTH, Settings


def set_console_password(settings: Settings, values: dict[str, Any]) -> Result:
    from daemon.console import password

    if settings.console_password is not None:
        raise ActionError(
            "The console password is set by KEYSMITH_CONSOLE_PASSWORD, which takes precedence; "
            f"unset it to use a password set here. {NOTHING_CHANGED}"
        )
    if not settings.db_path.exists():
        raise ActionError(
            f"No database yet at {settings.db_path}: Keysmith creates it when the service starts "
            f"for the first time. Start the service, then run this action. {NOTHING_CHANGED}"
        )
    new_hash = password.hash_password(values["password"])  # slow on purpose: not under the lock
    try:
        with users_lock_shared(settings.db_path):
            password.write_hash(settings.db_path, new_hash, actor="action")
    except (sqlite3.OperationalError, OSError) as error:  # OSError: opening its lock file
        if "no such table" in str(error):
            raise ActionError(
                "Keysmith has not finished its first start yet (the database has no settings "
                "table). Start the service and wait until its health check is green, then run "
                f"this action again. {NOTHING_CHANGED}"
            ) from None
        raise ActionError(
            f"The database {settings.db_path} could not be written ({error}). The password was "
            f"not changed and your data is intact; run this action again. {NOTHING_CHANGED}"
        ) from None
    return Result(
        "Console password set",
        "Sign in to the console (the Keysmith web interface, /admin/) with this password. "
        "Sessions opened with an older password have ended. Only its argon2id hash is stored.",
    )


ACTIONS = (
    Action(
        "set-console-password",
        "Set console password",
        "Sets the password of Keysmith's web console (the seller's pages and the upgrade "
        "history). Until one is set, the console lets nobody in.",
        set_console_password,
        group="Console",
        input=(
            Field(
                "password",
                "text",
                "Password",
                f"At least {CONSOLE_PASSWORD_MIN_LENGTH} characters; a passphrase of a few "
                "words is easy to type on a phone.",
                required=True,
                masked=True,
                min_length=CONSOLE_PASSWORD_MIN_LENGTH,
                max_length=CONSOLE_PASSWORD_MAX_LENGTH,
            ),
        ),
    ),
)
