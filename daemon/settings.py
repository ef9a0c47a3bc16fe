"""The daemon's configuration, read once from the environment and validated in one place.

A second source sits under the environment: the settings file `settings.env` in the data
folder, beside the database, which the action 'Server limits' writes (on StartOS the owner
cannot set environment variables). It holds `NAME=value` lines of the variables in
FILE_VARIABLES; a variable set (non-empty) in the environment wins over the file. An unknown
name or a bad value in the file is a SettingsError naming the file and the variable, exactly
as a bad environment variable is.

Kept free of heavy imports: the StartOS health check reads it too, every 15 seconds.
A malformed value is a known cause, not a crash: `Settings.lenient` returns usable defaults
plus the list of problems, so the boot can enter safe mode and say which variable is wrong.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from daemon import defaults, schema

DEFAULT_DB_PATH = Path(defaults.DEFAULT_DB_PATH)
DEFAULT_BIND_HOST = "127.0.0.1"
DEFAULT_BIND_PORT = 8080
LOG_FORMATS = ("text", "json")
# An admin key shorter than this is guessable; first boot generates a long one when unset.
ADMIN_KEY_MIN_LENGTH = 16
STATUS_FILE_NAME = "keysmith-status.json"
SETTINGS_FILE_NAME = "settings.env"
# How long a client may take to send a request head (from connecting, or from the previous
# answer on a kept-alive connection) and then its body. A client slower than this holds a
# connection and memory for nothing (slowloris); real clients send a few hundred bytes at once.
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 30.0
MAX_TIMEOUT = 600.0
# The console's password from the environment (outside StartOS); shorter is guessable offline.
CONSOLE_PASSWORD_MIN_LENGTH = 12
CONSOLE_PASSWORD_MAX_LENGTH = 1024
# Peers whose X-Forwarded-For / X-Forwarded-Proto are believed: loopback (a reverse proxy on
# the same machine) and the one address StartOS 0.4's own proxy connects from. Nothing else:
# StartOS forwards the plain-HTTP port with a DNAT rule that keeps the LAN client's own
# private address, so trusting private ranges let any LAN client claim any address.
# From the start-os source (github.com/Start9Labs/start-os, master 727e4d48a):
# - shared-libs/crates/start-core/src/lib.rs:8 `HOST_IP = [10, 0, 3, 1]`, the host's address
#   on the container bridge lxcbr0 (lxc/config.template:28 `lxc.net.0.link = lxcbr0`);
# - net/net_controller.rs:359 the proxy's target is the container's IPv4 address on that
#   bridge, and net/vhost.rs:859 `TcpStream::connect(self.addr)` opens it from the host, so
#   the container sees 10.0.3.1; net/http.rs:148 and :164 drop the client's X-Forwarded-For
#   and set the real one (`addXForwardedHeaders`, on for `http` bindings in start-sdk);
# - build/lib/scripts/forward-port:85 the plain port is a bare `dnat` (no masquerade but for
#   hairpin traffic from the host itself or another container, :92-93, which also arrives
#   from 10.0.3.1: those are on the same box).
# StartOS 0.3.5's proxy (core/startos/src/net/vhost.rs:188, from 172.18.0.1) copies the
# client's bytes as sent, headers included, so it is not trusted either.
DEFAULT_TRUSTED_PROXIES = (
    "127.0.0.0/8",
    "::1/128",
    "10.0.3.1/32",
)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Verified license keys remembered (each saves an Ed25519 verify, ~60 us), bounded both by
# count and by the total length of the key strings, so forged or padded keys cost at most
# the byte bound. A real key is ~250 characters: 20,000 of them fit in the byte bound, and
# the whole cache then costs ~12 MB (measured with bench/bench_scale.py).
DEFAULT_KEY_CACHE_ENTRIES = 20_000
DEFAULT_KEY_CACHE_BYTES = 8 * 1024 * 1024
# Deactivated machines kept per license as history; older ones are deleted.
DEFAULT_MACHINE_HISTORY = 100
# Settled (delivered or failed) webhook deliveries kept per endpoint in the delivery log, with
# their attempts; older ones are deleted. Pending deliveries are never deleted.
DEFAULT_WEBHOOK_HISTORY = 1000
# Requests per minute one client address may make to each rate-limited public route group
# (validate, heartbeat, redeem, recover), with a burst of the same size; 0 turns limits off.
# A client validating every few minutes uses a fraction of one; a flood is held to this.
DEFAULT_RATE_LIMIT_PER_MINUTE = 600
# Public writes (purchase, machine activate and deactivate) one client address may make per
# minute, burst the same; 0 turns the limit off. Each free purchase adds a license and an
# invoice, each activation of a new machine a row: a buyer needs a handful, a flood is held
# to this. (Validate, heartbeat, redeem and recover have KEYSMITH_RATE_LIMIT.)
DEFAULT_WRITE_RATE_LIMIT_PER_MINUTE = 30
# Discount codes. Every request that would tell whether a code exists (preview, purchase with
# a code, redeem) is limited per client address to CODE_CHECKS a minute, and the WRONG codes
# from all addresses together to WRONG_CODES a minute (a token bucket, burst the same), so
# rotating addresses, or a crowd behind one Tor exit or proxy, gains nothing. While that
# budget is spent every code check is refused (429), the right code included, so a spent
# budget reveals nothing. At 10 wrong codes a minute a guesser finds a 6-digit code (10^6
# possibilities, half of them tried on average) in 500,000 / 14,400 a day = 34.7 days.
DEFAULT_CODE_CHECKS_PER_MINUTE = 10
DEFAULT_WRONG_CODES_PER_MINUTE = 10
# A free or high-value code (one that takes at least half off: licensing.codes.valuable) is
# called weak to the seller when a guesser at the WRONG_CODES rate would find it within this
# many days.
DEFAULT_WEAK_CODE_DAYS = 365
# "Unlimited seats" (max_machines 0) still stops at this many active machines per license, so
# a leaked key cannot fill the disk with activations; 0 turns the ceiling off.
DEFAULT_UNLIMITED_SEATS = 1_000
# Webhook deliveries: one attempt may take this long (connect, send, answer), a failed one is
# retried after BACKOFF x 2^(attempt-1) seconds (jittered; at most 64 x BACKOFF, and an hour),
# and after MAX_ATTEMPTS attempts the delivery is marked failed (an admin can retry it).
# 10 attempts from 5 s: the last one about 20 minutes after the first.
DEFAULT_WEBHOOK_TIMEOUT = 10.0
DEFAULT_WEBHOOK_BACKOFF = 5.0
DEFAULT_WEBHOOK_MAX_ATTEMPTS = 10
# Webhooks go to public addresses only: not to loopback, link-local (the cloud metadata
# address), private, unspecified or multicast ones, which would make the daemon a client inside
# the seller's own network for whoever may create an endpoint. The operator may allow networks
# (a sibling service on the same box) with this variable.
WEBHOOK_ALLOW_VARIABLE = "KEYSMITH_WEBHOOK_ALLOW_NETWORKS"
# Only a boot that never reached serving, or died within this long of reaching it, is evidence of
# a crash loop. A daemon that served this long had migrated, opened its pool and answered
# StartOS's health checks (every 15 s: this is four of them) with its own code paths: its death
# afterwards (an OOM kill, a power cut) says nothing about the next boot, which must not be kept
# offline by it. A defect that kills the daemon right after it starts serving still counts.
DEFAULT_HEALTHY_SERVING_SECONDS = 60.0


def default_migrations_dir() -> Path:
    """The `migrations/` folder shipped beside the `daemon` package (repo checkout or image)."""
    return Path(schema.MIGRATIONS_DIR)


class SettingsError(ValueError):
    """One environment variable holds a value the daemon cannot use."""

    def __init__(
        self,
        variable: str,
        value: str,
        expected: str,
        *,
        secret: bool = False,
        source: Path | None = None,
    ) -> None:
        self.variable = variable
        # A secret's value is never kept: this message ends up in logs and the health check.
        self.value = f"<{len(value)} characters, hidden>" if secret else value
        self.expected = expected
        self.source = source
        shown = self.value if secret else repr(value)
        where = "" if source is None else f" in the settings file {source}"
        super().__init__(f"{variable}={shown}{where} is not valid: expected {expected}")

    @property
    def remedy(self) -> str:
        if self.source is None:
            return f"Set {self.variable} to {self.expected}."
        return (
            f"Correct or delete {self.variable} in the settings file {self.source} (expected "
            f"{self.expected}); on StartOS, run the action 'Server limits', which rewrites it."
        )


@dataclass(frozen=True)
class Settings:
    db_path: Path = field(default_factory=lambda: DEFAULT_DB_PATH.resolve())
    migrations_dir: Path = field(default_factory=default_migrations_dir)
    bind_host: str = DEFAULT_BIND_HOST
    bind_port: int = DEFAULT_BIND_PORT
    admin_api_key: str | None = field(default=None, repr=False)
    log_format: str = "text"
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    console_password: str | None = field(default=None, repr=False)
    trusted_proxies: tuple[Network, ...] = field(
        default_factory=lambda: tuple(ipaddress.ip_network(n) for n in DEFAULT_TRUSTED_PROXIES)
    )

    key_cache_entries: int = DEFAULT_KEY_CACHE_ENTRIES
    key_cache_bytes: int = DEFAULT_KEY_CACHE_BYTES
    machine_history: int = DEFAULT_MACHINE_HISTORY
    webhook_history: int = DEFAULT_WEBHOOK_HISTORY
    rate_limit_per_minute: int = DEFAULT_RATE_LIMIT_PER_MINUTE
    write_rate_limit_per_minute: int = DEFAULT_WRITE_RATE_LIMIT_PER_MINUTE
    code_checks_per_minute: int = DEFAULT_CODE_CHECKS_PER_MINUTE
    wrong_codes_per_minute: int = DEFAULT_WRONG_CODES_PER_MINUTE
    weak_code_days: int = DEFAULT_WEAK_CODE_DAYS
    unlimited_seats: int = DEFAULT_UNLIMITED_SEATS
    webhook_timeout: float = DEFAULT_WEBHOOK_TIMEOUT
    webhook_backoff: float = DEFAULT_WEBHOOK_BACKOFF
    webhook_max_attempts: int = DEFAULT_WEBHOOK_MAX_ATTEMPTS
    webhook_allow_networks: tuple[Network, ...] = ()
    healthy_serving_seconds: float = DEFAULT_HEALTHY_SERVING_SECONDS

    @property
    def data_dir(self) -> Path:
        return self.db_path.parent

    @property
    def status_path(self) -> Path:
        return self.data_dir / STATUS_FILE_NAME

    @property
    def settings_file(self) -> Path:
        return settings_file_path(self.db_path)

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
        from_file = _read_file_leniently(env, errors)
        for name, parse, key in _PARSERS:
            raw = env.get(name, "") or from_file.get(name, "")  # the environment wins
            if raw == "":
                continue
            try:
                values.update(dict(zip(key, parse(name, raw), strict=True)))
            except SettingsError as e:
                errors.append(e)
        return cls(**values), errors  # type: ignore[arg-type]


Source = Literal["default", "file", "environment"]


def sources(environ: Mapping[str, str] | None = None) -> dict[str, tuple[Source, str]]:
    """Where each variable of FILE_VARIABLES takes its value from, and that raw value
    ("" for a default)."""
    env = os.environ if environ is None else environ
    from_file = _read_file_leniently(env, [])
    found: dict[str, tuple[Source, str]] = {}
    for name in FILE_VARIABLES:
        if env.get(name, ""):
            found[name] = ("environment", env[name])
        elif from_file.get(name, ""):
            found[name] = ("file", from_file[name])
        else:
            found[name] = ("default", "")
    return found


def settings_file_path(db_path: Path) -> Path:
    return db_path.parent / SETTINGS_FILE_NAME


def read_settings_file(path: Path) -> dict[str, str]:
    """The file's NAME=value lines ('#' comments and blank lines skipped); a missing file is
    empty. Raises SettingsError for a line that is not NAME=value, a name twice, a name the
    file may not hold, or a value the environment's parser refuses: a file that is read is
    whole and valid, so the action that rewrites it never keeps a bad line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as error:
        raise SettingsError(
            SETTINGS_FILE_NAME, f"<unreadable: {error}>", "a readable UTF-8 text file", source=path
        ) from None
    found: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, sep, value = stripped.partition("=")
        name = name.strip()
        if not sep:
            raise SettingsError(
                f"line {number}", line, "NAME=value, e.g. KEYSMITH_RATE_LIMIT=600", source=path
            )
        if name not in FILE_VARIABLES:
            raise SettingsError(
                name,
                value.strip(),
                "a name the settings file may hold: " + ", ".join(FILE_VARIABLES),
                source=path,
            )
        if name in found:
            raise SettingsError(name, value.strip(), "one line per name", source=path)
        try:
            parse_variable(name, value.strip())
        except SettingsError as error:
            raise SettingsError(name, value.strip(), error.expected, source=path) from None
        found[name] = value.strip()
    return found


def _read_file_leniently(env: Mapping[str, str], errors: list[SettingsError]) -> dict[str, str]:
    """The settings file beside the database the environment names (the file cannot move
    the database: its place depends on it). A broken file adds its error and counts as empty,
    so the daemon boots into safe mode with the defaults and names the file."""
    raw_db = env.get(defaults.DB_PATH_VARIABLE, "")
    try:
        db_path = _parse_db_path(defaults.DB_PATH_VARIABLE, raw_db)[0] if raw_db else None
    except SettingsError:
        db_path = None  # reported by the environment's own pass
    path = settings_file_path(db_path or DEFAULT_DB_PATH.resolve())
    try:
        return read_settings_file(path)
    except SettingsError as error:
        errors.append(error)
        return {}


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


def _parse_console_password(name: str, raw: str) -> tuple[str]:
    if not CONSOLE_PASSWORD_MIN_LENGTH <= len(raw) <= CONSOLE_PASSWORD_MAX_LENGTH:
        raise SettingsError(
            name,
            raw,
            f"{CONSOLE_PASSWORD_MIN_LENGTH} to {CONSOLE_PASSWORD_MAX_LENGTH} characters, or "
            "unset to use the password set with the action 'Set console password'",
            secret=True,
        )
    return (raw,)


def _parse_networks(name: str, raw: str) -> tuple[tuple[Network, ...]]:
    expected = "comma-separated addresses or networks, e.g. 10.0.3.1,192.168.0.0/16"
    try:
        return (tuple(ipaddress.ip_network(p.strip()) for p in raw.split(",") if p.strip()),)
    except ValueError:
        raise SettingsError(name, raw, expected) from None


def _parse_log_format(name: str, raw: str) -> tuple[str]:
    value = raw.strip().lower()
    if value not in LOG_FORMATS:
        raise SettingsError(name, raw, " or ".join(LOG_FORMATS))
    return (value,)


def _parse_seconds(name: str, raw: str) -> tuple[float]:
    expected = f"a number of seconds greater than 0 and at most {MAX_TIMEOUT:g}, e.g. 10 or 2.5"
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(name, raw, expected) from None
    if not 0 < value <= MAX_TIMEOUT:  # also refuses nan
        raise SettingsError(name, raw, expected)
    return (value,)


def _count_parser(expected: str) -> Callable[[str, str], tuple[int]]:
    """A parser of a whole number from 0 to 10**12 (0 turns a cache or the history off)."""

    def parse(name: str, raw: str) -> tuple[int]:
        text = raw.strip().replace("_", "")
        if not text.isdigit() or int(text) > 10**12:
            raise SettingsError(name, raw, expected)
        return (int(text),)

    return parse


# (variable, parser, the Settings fields it fills), in the order problems are reported.
_PARSERS = (
    (defaults.DB_PATH_VARIABLE, _parse_db_path, ("db_path",)),
    (defaults.MIGRATIONS_DIR_VARIABLE, _parse_migrations_dir, ("migrations_dir",)),
    ("KEYSMITH_BIND", _parse_bind, ("bind_host", "bind_port")),
    ("KEYSMITH_ADMIN_API_KEY", _parse_admin_key, ("admin_api_key",)),
    ("KEYSMITH_LOG_FORMAT", _parse_log_format, ("log_format",)),
    ("KEYSMITH_HEADER_TIMEOUT", _parse_seconds, ("header_timeout",)),
    ("KEYSMITH_BODY_TIMEOUT", _parse_seconds, ("body_timeout",)),
    (
        "KEYSMITH_KEY_CACHE_SIZE",
        _count_parser("a whole number of license keys to remember, e.g. 20000 (0: none)"),
        ("key_cache_entries",),
    ),
    (
        "KEYSMITH_KEY_CACHE_BYTES",
        _count_parser("a whole number of bytes of key text to remember, e.g. 8388608"),
        ("key_cache_bytes",),
    ),
    (
        "KEYSMITH_MACHINE_HISTORY",
        _count_parser("a whole number of deactivated machines kept per license, e.g. 100"),
        ("machine_history",),
    ),
    (
        "KEYSMITH_WEBHOOK_HISTORY",
        _count_parser("a whole number of settled webhook deliveries kept per endpoint, e.g. 1000"),
        ("webhook_history",),
    ),
    (
        "KEYSMITH_RATE_LIMIT",
        _count_parser(
            "a whole number of requests per minute per client address, e.g. 600 (0: off)"
        ),
        ("rate_limit_per_minute",),
    ),
    (
        "KEYSMITH_WRITE_RATE_LIMIT",
        _count_parser(
            "a whole number of purchases and machine activations per minute per client "
            "address, e.g. 30 (0: off)"
        ),
        ("write_rate_limit_per_minute",),
    ),
    (
        "KEYSMITH_CODE_CHECKS_PER_MINUTE",
        _count_parser(
            "a whole number of discount-code checks per minute per client address, e.g. 10 (0: off)"
        ),
        ("code_checks_per_minute",),
    ),
    (
        "KEYSMITH_WRONG_CODES_PER_MINUTE",
        _count_parser(
            "a whole number of wrong discount codes per minute from all clients together, "
            "e.g. 10 (0: off)"
        ),
        ("wrong_codes_per_minute",),
    ),
    (
        "KEYSMITH_WEAK_CODE_DAYS",
        _count_parser("a whole number of days, e.g. 365 (0: never warn about a weak code)"),
        ("weak_code_days",),
    ),
    (
        "KEYSMITH_UNLIMITED_SEATS",
        _count_parser(
            "a whole number of active machines per license with unlimited seats, e.g. 1000 "
            "(0: no ceiling)"
        ),
        ("unlimited_seats",),
    ),
    ("KEYSMITH_WEBHOOK_TIMEOUT", _parse_seconds, ("webhook_timeout",)),
    ("KEYSMITH_WEBHOOK_BACKOFF", _parse_seconds, ("webhook_backoff",)),
    (
        "KEYSMITH_WEBHOOK_MAX_ATTEMPTS",
        _count_parser("a whole number of attempts per webhook delivery, e.g. 10"),
        ("webhook_max_attempts",),
    ),
    ("KEYSMITH_HEALTHY_SERVING_SECONDS", _parse_seconds, ("healthy_serving_seconds",)),
    ("KEYSMITH_CONSOLE_PASSWORD", _parse_console_password, ("console_password",)),
    ("KEYSMITH_TRUSTED_PROXIES", _parse_networks, ("trusted_proxies",)),
    (WEBHOOK_ALLOW_VARIABLE, _parse_networks, ("webhook_allow_networks",)),
)

# What the settings file may hold: the limits an operator tunes. Not the database's or the
# migrations' place (the file's own place depends on them), not the bind address (StartOS
# binds the port), and no secret (the admin key, the console password have their own ways).
FILE_VARIABLES = (
    "KEYSMITH_UNLIMITED_SEATS",
    "KEYSMITH_WRITE_RATE_LIMIT",
    "KEYSMITH_RATE_LIMIT",
    "KEYSMITH_CODE_CHECKS_PER_MINUTE",
    "KEYSMITH_WRONG_CODES_PER_MINUTE",
    "KEYSMITH_WEAK_CODE_DAYS",
    WEBHOOK_ALLOW_VARIABLE,
    "KEYSMITH_TRUSTED_PROXIES",
    "KEYSMITH_MACHINE_HISTORY",
    "KEYSMITH_WEBHOOK_HISTORY",
    "KEYSMITH_WEBHOOK_TIMEOUT",
    "KEYSMITH_WEBHOOK_BACKOFF",
    "KEYSMITH_WEBHOOK_MAX_ATTEMPTS",
    "KEYSMITH_KEY_CACHE_SIZE",
    "KEYSMITH_KEY_CACHE_BYTES",
    "KEYSMITH_HEADER_TIMEOUT",
    "KEYSMITH_BODY_TIMEOUT",
    "KEYSMITH_LOG_FORMAT",
)


def parse_variable(name: str, raw: str) -> None:
    """Check one value as the daemon would read it; raise its SettingsError."""
    for known, parse, _key in _PARSERS:
        if known == name:
            parse(name, raw)
            return
    raise SettingsError(name, raw, "a variable Keysmith knows")


def shown_value(settings: Settings, name: str) -> str:
    """The value of variable NAME in SETTINGS, as an operator would write it."""
    for known, _parse, keys in _PARSERS:
        if known == name:
            value = getattr(settings, keys[0])
            if isinstance(value, tuple):
                return ",".join(str(n) for n in value) or "(none)"
            return f"{value:g}" if isinstance(value, float) else str(value)
    raise KeyError(name)
