"""The memory and history bounds from the environment: defaults, accepted forms, refusals."""

from __future__ import annotations

import pytest

from daemon.settings import (
    DEFAULT_KEY_CACHE_BYTES,
    DEFAULT_KEY_CACHE_ENTRIES,
    DEFAULT_MACHINE_HISTORY,
    DEFAULT_WEBHOOK_HISTORY,
    Settings,
    SettingsError,
)

VARIABLES = {
    "KEYSMITH_KEY_CACHE_SIZE": "key_cache_entries",
    "KEYSMITH_KEY_CACHE_BYTES": "key_cache_bytes",
    "KEYSMITH_MACHINE_HISTORY": "machine_history",
    "KEYSMITH_WEBHOOK_HISTORY": "webhook_history",
}


def test_defaults():
    settings = Settings.from_env({})
    assert settings.key_cache_entries == DEFAULT_KEY_CACHE_ENTRIES
    assert settings.key_cache_bytes == DEFAULT_KEY_CACHE_BYTES
    assert settings.machine_history == DEFAULT_MACHINE_HISTORY
    assert settings.webhook_history == DEFAULT_WEBHOOK_HISTORY


@pytest.mark.parametrize("variable", VARIABLES)
@pytest.mark.parametrize(("raw", "value"), [("0", 0), ("250", 250), (" 1_000_000 ", 1_000_000)])
def test_whole_numbers_are_read(variable, raw, value):
    assert getattr(Settings.from_env({variable: raw}), VARIABLES[variable]) == value


@pytest.mark.parametrize("variable", VARIABLES)
@pytest.mark.parametrize("raw", ["-1", "lots", "1e6", "2.5", str(10**12 + 1)])
def test_anything_else_names_the_variable_and_keeps_the_default(variable, raw):
    with pytest.raises(SettingsError, match=f"^{variable}=.* is not valid: expected a whole"):
        Settings.from_env({variable: raw})
    settings, errors = Settings.lenient({variable: raw})
    assert [e.variable for e in errors] == [variable]
    assert getattr(settings, VARIABLES[variable]) == getattr(Settings(), VARIABLES[variable])
