"""StartOS actions: `python -m daemon action NAME [INPUT]`, and `--catalogue`.

One code path for every front end: the StartOS 0.4 package (startos/actions.json is the
catalogue printed here), the 0.3.5 manifest (`--legacy`) and a person at a shell all run this.
Every outcome is either one JSON result on stdout and exit 0, or an operator message on stderr
and exit 1: never a traceback.

`--prefill NAME` prints the current values of the action's form (StartOS 0.4 fills the form
with them). INPUT is JSON text; `-` reads it from stdin; absent or `null` means no input
(StartOS 0.4's legacy adapter appends `null` to actions without a form). With `--legacy`, an
action with a form and no INPUT reads stdin, where StartOS 0.3.5 writes the form's JSON.

The actions run in their own process (a fresh container) with the data volume, so they read
the settings from the same environment (and settings file) as the daemon and never talk to it
over HTTP.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from daemon.actions import (
    forms,
    ops_console,
    ops_downgrade,
    ops_import,
    ops_migrate,
    ops_settings,
)
from daemon.actions.registry import Action, ActionError, InputError
from daemon.settings import Settings, SettingsError

EXIT_OK, EXIT_ERROR = 0, 1

ACTIONS: dict[str, Action] = {
    a.id: a
    for a in (
        *ops_migrate.ACTIONS,
        *ops_downgrade.ACTIONS,
        *forms.ACTIONS,
        *ops_console.ACTIONS,
        *ops_settings.ACTIONS,
        *ops_import.ACTIONS,
    )
}


def catalogue_json() -> str:
    """Every action's declaration, as startos/actions.json holds it."""
    return json.dumps([a.catalogue() for a in ACTIONS.values()], indent=2) + "\n"


def action_main(name: str, raw_input: str | None, *, legacy: bool = False) -> int:
    """Run the action `name`; print its result JSON (exit 0) or an error on stderr (exit 1)."""
    action = ACTIONS.get(name)
    if action is None:
        known = ", ".join(sorted(ACTIONS))
        print(f"unknown action {name!r}; known actions: {known}", file=sys.stderr)
        return EXIT_ERROR
    if legacy and raw_input is None and action.input is not None:
        raw_input = "-"
    try:
        values = action.parse(_decode(action, raw_input))
        settings, errors = Settings.lenient()
        if errors and not action.repairs_settings:
            raise errors[0]
        result = action.run(settings, values)
    except (ActionError, SettingsError) as error:
        print(str(error), file=sys.stderr)
        return EXIT_ERROR
    except Exception as error:  # the operator gets a message, never a traceback
        print(
            f"The action '{name}' failed unexpectedly ({type(error).__name__}: {error}). "
            "Every change an action makes is one transaction or one atomic rename, so nothing "
            "was left half-done. Check the service's health, then run the action again; if it "
            "fails the same way, report this message.",
            file=sys.stderr,
        )
        return EXIT_ERROR
    print(json.dumps(result.legacy() if legacy else result.v1()))
    return EXIT_OK


def prefill_main(name: str) -> int:
    """Print the current values of the action's form as JSON (null: none), for StartOS 0.4 to
    show the form filled in."""
    action = ACTIONS.get(name)
    if action is None:
        print(f"unknown action {name!r}", file=sys.stderr)
        return EXIT_ERROR
    settings, _errors = Settings.lenient()
    print(json.dumps(None if action.prefill is None else action.prefill(settings)))
    return EXIT_OK


def _decode(action: Action, raw_input: str | None) -> Any:
    if raw_input == "-":
        raw_input = sys.stdin.read()
    if raw_input is None or not raw_input.strip():
        return None
    try:
        return json.loads(raw_input)
    except json.JSONDecodeError as error:
        raise InputError(
            f"The input of '{action.id}' is not valid JSON ({error.msg} at character "
            f"{error.pos}). Nothing was changed."
        ) from None


__all__ = ["ACTIONS", "ActionError", "action_main", "catalogue_json", "prefill_main"]
