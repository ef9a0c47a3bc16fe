"""Settings from the environment: defaults, every variable's accepted forms, and malformed values
reported by name with what was expected (and, live, a malformed value means safe mode)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from daemon.settings import (
    ADMIN_KEY_MIN_LENGTH,
    Settings,
    SettingsError,
    default_migrations_dir,
)
from tests.daemon_proc import DaemonProc

REPO = Path(__file__).resolve().parent.parent


def test_defaults_match_the_design_table(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env({})
    assert settings.db_path == tmp_path / "data" / "keysmith.db"
    assert settings.data_dir == tmp_path / "data"
    assert settings.status_path == tmp_path / "data" / "keysmith-status.json"
    assert settings.migrations_dir == default_migrations_dir() == REPO / "migrations"
    assert (settings.bind_host, settings.bind_port, settings.bind) == (
        "127.0.0.1",
        8080,
        "127.0.0.1:8080",
    )
    assert settings.admin_api_key is None
    assert settings.log_format == "text"


def test_every_variable_is_read(tmp_path):
    key = "k" * ADMIN_KEY_MIN_LENGTH
    settings = Settings.from_env(
        {
            "KEYSMITH_DB_PATH": str(tmp_path / "db" / "x.db"),
            "KEYSMITH_MIGRATIONS_DIR": str(tmp_path / "m"),
            "KEYSMITH_BIND": "0.0.0.0:9000",
            "KEYSMITH_ADMIN_API_KEY": key,
            "KEYSMITH_LOG_FORMAT": "JSON",
            "UNRELATED": "ignored",
        }
    )
    assert settings.db_path == tmp_path / "db" / "x.db"
    assert settings.migrations_dir == tmp_path / "m"
    assert (settings.bind_host, settings.bind_port) == ("0.0.0.0", 9000)
    assert settings.admin_api_key == key
    assert settings.log_format == "json"
    assert key not in repr(settings)  # a settings dump in a log line must not leak it


def test_ipv6_bind_and_empty_values_mean_default():
    settings = Settings.from_env({"KEYSMITH_BIND": "[::]:8443", "KEYSMITH_ADMIN_API_KEY": ""})
    assert (settings.bind_host, settings.bind_port, settings.bind) == ("::", 8443, "[::]:8443")
    assert settings.admin_api_key is None


@pytest.mark.parametrize(
    "variable, value, expected_words",
    [
        ("KEYSMITH_BIND", "8080", "host:port"),
        ("KEYSMITH_BIND", "localhost:http", "host:port"),
        ("KEYSMITH_BIND", "127.0.0.1:0", "1 to 65535"),
        ("KEYSMITH_BIND", "127.0.0.1:70000", "1 to 65535"),
        ("KEYSMITH_BIND", "::1:8080", "[::]:8080"),
        ("KEYSMITH_BIND", "[nonsense]:8080", "host:port"),
        ("KEYSMITH_LOG_FORMAT", "xml", "text or json"),
        ("KEYSMITH_DB_PATH", "/tmp/", "not a folder"),
    ],
)
def test_malformed_values_name_the_variable_and_what_was_expected(variable, value, expected_words):
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: value})
    error = caught.value
    assert error.variable == variable and error.value == value
    assert expected_words in error.expected
    assert str(error).startswith(f"{variable}={value!r} is not valid: expected ")


def test_a_bad_admin_key_is_reported_without_echoing_it():
    weak = "short key"
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"KEYSMITH_ADMIN_API_KEY": weak})
    assert weak not in str(caught.value) and weak not in caught.value.value
    assert f"{len(weak)} characters, hidden" in str(caught.value)


def test_lenient_keeps_defaults_and_reports_every_problem():
    settings, errors = Settings.lenient(
        {
            "KEYSMITH_BIND": "nope",
            "KEYSMITH_LOG_FORMAT": "yaml",
            "KEYSMITH_MIGRATIONS_DIR": "/srv/m",
        }
    )
    assert [e.variable for e in errors] == ["KEYSMITH_BIND", "KEYSMITH_LOG_FORMAT"]
    assert settings.bind_port == 8080 and settings.log_format == "text"
    assert settings.migrations_dir == Path("/srv/m")


def test_a_malformed_setting_boots_into_safe_mode_without_opening_the_database(tmp_path):
    with DaemonProc(tmp_path, env={"KEYSMITH_LOG_FORMAT": "xml"}) as d:
        record = d.wait_for("failed")
        assert record["cause"]["kind"] == "settings" and d.alive()
        code, out, err = d.health()
        assert code == 1 and out == ""
        assert "KEYSMITH_LOG_FORMAT='xml' is not valid: expected text or json" in err
        assert "Set KEYSMITH_LOG_FORMAT to text or json" in err
        status, body = d.request("GET", "/healthz")
        assert status == 503 and body["cause"]["kind"] == "settings"
        assert d.stop() == 0
    assert not d.db_path.exists()
    with pytest.raises(sqlite3.OperationalError):
        sqlite3.connect(f"file:{d.db_path}?mode=ro", uri=True).execute("SELECT 1")
