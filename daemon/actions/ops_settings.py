"""The settings file's actions: set the server limits, and show where each value comes from.

On StartOS the owner cannot set environment variables, so the limits a seller tunes live in
the settings file beside the database (daemon/settings.py reads it under the environment).
The form and the file are checked by the daemon's own parsers, so the action never writes a
value the daemon would refuse. The daemon reads the file when it starts.
"""

from __future__ import annotations

from typing import Any

from daemon.actions.registry import NOTHING_CHANGED, Action, ActionError, InputError, number, text
from daemon.actions.results import Result, Value
from daemon.settings import (
    FILE_VARIABLES,
    WEBHOOK_ALLOW_VARIABLE,
    Settings,
    SettingsError,
    parse_variable,
    read_settings_file,
    shown_value,
    sources,
)
from daemon.status import write_atomic

# Form field id -> the variable it sets.
FIELDS = {
    "unlimited_seats": "KEYSMITH_UNLIMITED_SEATS",
    "write_rate_limit": "KEYSMITH_WRITE_RATE_LIMIT",
    "rate_limit": "KEYSMITH_RATE_LIMIT",
    "code_checks_per_minute": "KEYSMITH_CODE_CHECKS_PER_MINUTE",
    "wrong_codes_per_minute": "KEYSMITH_WRONG_CODES_PER_MINUTE",
    "webhook_allow_networks": WEBHOOK_ALLOW_VARIABLE,
}
SOURCE_WORDS = {
    "default": "default",
    "file": "from the settings file",
    "environment": "from the environment",
}
CLEAR = "none"
KEEP = "Empty: keep the current value."
MAX_COUNT = 1_000_000_000
APPLY = "The new values apply when the service restarts: restart it from its StartOS page."


def set_limits(settings: Settings, values: dict[str, Any]) -> Result:
    path = settings.settings_file
    try:
        current = read_settings_file(path)
        replaced = ""
    except SettingsError as error:
        current = {}
        replaced = f" The old settings file was not valid ({error}); it was replaced."
    changes = {FIELDS[k]: _checked(k, v) for k, v in values.items() if v is not None}
    if not changes:
        raise ActionError(f"No value was given. {NOTHING_CHANGED}")
    merged = {**current, **changes}
    lines = [f"{name}={merged[name]}\n" for name in FILE_VARIABLES if merged.get(name, "")]
    header = "# Written by the action 'Server limits'. An environment variable set wins.\n"
    try:
        write_atomic(path, (header + "".join(lines)).encode(), mode=0o600)
    except OSError as error:
        raise ActionError(
            f"The settings file {path} could not be written ({error}). {NOTHING_CHANGED}"
        ) from None
    overridden = [n for n in changes if sources()[n][0] == "environment"]
    note = (
        f" Set in the environment, which wins over the file: {', '.join(overridden)}."
        if overridden
        else ""
    )
    return Result("Server limits saved", f"Saved to {path}. {APPLY}{replaced}{note}", _table())


def show_limits(_settings: Settings, _values: dict[str, Any]) -> Result:
    return Result(
        "Server limits",
        "The values the service reads at its next start, and where each comes from (default, "
        "the settings file, or the environment, which wins). Change them with 'Server limits'.",
        _table(),
    )


def current_values(settings: Settings) -> dict[str, Any]:
    """The form filled with the values the next start reads (StartOS 0.4 shows it so)."""
    values: dict[str, Any] = {
        "unlimited_seats": settings.unlimited_seats,
        "write_rate_limit": settings.write_rate_limit_per_minute,
        "rate_limit": settings.rate_limit_per_minute,
        "code_checks_per_minute": settings.code_checks_per_minute,
        "wrong_codes_per_minute": settings.wrong_codes_per_minute,
    }
    networks = ",".join(str(n) for n in settings.webhook_allow_networks)
    values["webhook_allow_networks"] = networks or None
    return values


def _checked(field_id: str, value: Any) -> str:
    """The value as the file holds it; a value the daemon would refuse is an InputError."""
    raw = str(value).strip()
    if field_id == "webhook_allow_networks" and raw.lower() == CLEAR:
        return ""
    try:
        parse_variable(FIELDS[field_id], raw)
    except SettingsError as error:
        raise InputError(
            f"'{field_id}' is not valid: expected {error.expected}. {NOTHING_CHANGED}"
        ) from None
    return raw


def _table() -> tuple[Value, ...]:
    effective, _errors = Settings.lenient()
    return tuple(
        Value(
            shown_value(effective, name),
            name=name,
            description=SOURCE_WORDS[source],
        )
        for name, (source, _raw) in sources().items()
    )


def _count(field_id: str, name: str, what: str) -> Any:
    return number(field_id, name, f"{what} {KEEP}", minimum=0, maximum=MAX_COUNT)


ACTIONS = (
    Action(
        "server-limits",
        "Server limits",
        "Sets the limits of the public API: seats of an 'unlimited' license, request rates, "
        "discount-code guessing, and the private networks webhooks may reach. " + APPLY,
        set_limits,
        group="Settings",
        repairs_settings=True,
        prefill=current_values,
        input=(
            _count(
                "unlimited_seats",
                "Unlimited-seats ceiling",
                "Active machines a license with unlimited seats may have (default 1000; 0: no "
                "ceiling).",
            ),
            _count(
                "write_rate_limit",
                "Public write rate",
                "Purchases and machine activations per minute per client address (default 30; "
                "0: off).",
            ),
            _count(
                "rate_limit",
                "Validate rate",
                "Validate, heartbeat, redeem and recover requests per minute per client address "
                "(default 600; 0: off).",
            ),
            _count(
                "code_checks_per_minute",
                "Code checks per minute",
                "Discount-code checks per minute per client address (default 10; 0: off).",
            ),
            _count(
                "wrong_codes_per_minute",
                "Wrong codes per minute",
                "Wrong discount codes per minute from all clients together (default 10; 0: off). "
                "Lower it during a guessing attack.",
            ),
            text(
                "webhook_allow_networks",
                "Webhook private networks",
                "Comma-separated addresses or networks webhooks may reach although private, "
                f"e.g. 10.0.3.1 for a sibling service on this server. '{CLEAR}': none (the "
                f"default). {KEEP}",
                max_length=1000,
                placeholder="10.0.3.1",
            ),
        ),
    ),
    Action(
        "show-server-limits",
        "Show server limits",
        "Shows the server limits the service reads at its next start and where each comes from.",
        show_limits,
        group="Settings",
        repairs_settings=True,
    ),
)
