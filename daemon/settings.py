"""The daemon's configuration, read once from the environment and validated in one place.

Kept free of heavy imports: the StartOS health check reads it too, every 15 seconds.
A malformed value is a known cause, not a crash: `Settings.lenient` returns usable defaults
plus the list of problems, so the boot can enter safe mode and say which variable is wrong.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from daemon import defaults, schema

DEFAULT_DB_PATH = Path(defaults.DEFAULT_DB_PATH)
DEFAULT_BIND_HOST = "127.0.0.1"
DEFAULT_BIND_PORT = 8080
LOG_FORMATS = ("text", "json")
# An admin key shorter than this is guessable; first boot generates a long one when unset.
ADMIN_KEY_MIN_LENGTH = 16
STATUS_FILE_NAME = "keysmith-status.json"


def default_migrations_dir() -> Path:
    """The `migrations/` folder shipped beside the `daemon` package (repo checkout or image)."""
    return Path(schema.MIGRATIONS_DIR)


class SettingsError(ValueError):
    """One environment variable holds a value the daemon cannot use."""

    def __init__(self, variable: str, value: str, expected: str, *, secret: bool = False) -> None:
        self.variable = variable
        # A secret's value is never kept: this message ends up in logs and the health check.
        self.value = f"<{len(value)} characters, hidden>" if secret else value
        self.expected = expected
        shown = self.value if secret else repr(value)
        super().__init__(f"{variable}={shown} is not valid: expected {expected}")


@dataclass(frozen=True)
class Settings:
    db_path: Path = field(default_factory=lambda: DEFAULT_DB_PATH.resolve())
    migrations_dir: Path = field(default_factory=default_migrations_dir)
    bind_host: str = DEFAULT_BIND_HOST
    bind_port: int = DEFAULT_BIND_PORT
    admin_api_key: str | None = field(default=None, repr=False)
    log_format: str = "text"

    @property
    def data_dir(self) -> Path:
        return self.db_path.parent

    @property
    def status_path(self) -> Path:
        return self.data_dir / STATUS_FILE_NAME

    @property
    def bind(self) -> str:
        host = f"[{self.bind_host}]" if ":" in self.bind_host else self.bind_host
        return f"{host}:{self.bind_port}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build the settings; raise `SettingsError` for the first malformed variable."""
        settings, errors = cls.lenient(environ)
        if errors:
            raise errors[0]
        return settings

    @classmethod
    def lenient(
        cls, environ: Mapping[str, str] | None = None
    ) -> tuple[Settings, list[SettingsError]]:
        """Build the settings, using the default for every malformed variable.

        Returns the settings and every problem found, so safe mode can still find the data
        folder and the port while it reports the bad variable.
        """
        env = os.environ if environ is None else environ
        errors: list[SettingsError] = []
        values: dict[str, object] = {}
        for name, parse, key in _PARSERS:
            raw = env.get(name, "")
            if raw == "":
                continue
            try:
                values.update(dict(zip(key, parse(name, raw), strict=True)))
            except SettingsError as e:
                errors.append(e)
        return cls(**values), errors  # type: ignore[arg-type]


def _parse_db_path(name: str, raw: str) -> tuple[Path]:
    path = Path(raw).expanduser()
    if raw.endswith(("/", os.sep)) or path.is_dir():
        raise SettingsError(name, raw, "the path of the SQLite file, not a folder")
    return (path.resolve(),)


def _parse_migrations_dir(name: str, raw: str) -> tuple[Path]:
    return (Path(raw).expanduser().resolve(),)


def _parse_bind(name: str, raw: str) -> tuple[str, int]:
    expected = "host:port, e.g. 127.0.0.1:8080 or [::]:8080, with a port from 1 to 65535"
    host, sep, port_text = raw.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise SettingsError(name, raw, expected)
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise SettingsError(name, raw, expected)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise SettingsError(name, raw, expected) from None
    elif ":" in host or any(c.isspace() for c in host):
        raise SettingsError(name, raw, expected)
    return host, port


def _parse_admin_key(name: str, raw: str) -> tuple[str]:
    # Never echo the key itself back into an error message: it would end up in logs.
    if len(raw) < ADMIN_KEY_MIN_LENGTH or not raw.isprintable() or any(c.isspace() for c in raw):
        raise SettingsError(
            name,
            raw,
            f"at least {ADMIN_KEY_MIN_LENGTH} printable characters without spaces, "
            "or unset to generate one on first boot",
            secret=True,
        )
    return (raw,)


def _parse_log_format(name: str, raw: str) -> tuple[str]:
    value = raw.strip().lower()
    if value not in LOG_FORMATS:
        raise SettingsError(name, raw, " or ".join(LOG_FORMATS))
    return (value,)


# (variable, parser, the Settings fields it fills), in the order problems are reported.
_PARSERS = (
    (defaults.DB_PATH_VARIABLE, _parse_db_path, ("db_path",)),
    (defaults.MIGRATIONS_DIR_VARIABLE, _parse_migrations_dir, ("migrations_dir",)),
    ("KEYSMITH_BIND", _parse_bind, ("bind_host", "bind_port")),
    ("KEYSMITH_ADMIN_API_KEY", _parse_admin_key, ("admin_api_key",)),
    ("KEYSMITH_LOG_FORMAT", _parse_log_format, ("log_format",)),
)
