"""Log lines: one per event on stderr, `timestamp LEVEL logger message key=value ...`.

StartOS shows the container's stdout/stderr in its Logs page, so every line must stand alone:
exceptions are folded into the line instead of spilling a multi-line traceback. Context comes
from `extra={...}` on the logging call (either flat keys or a `context` dict). With
KEYSMITH_LOG_FORMAT=json each line is one JSON object instead.

Secrets never reach the output, whoever writes the line (our code or a library such as
aiohttp quoting a malformed request): context keys that name a secret are masked; credentials
recognisable by their shape are masked by pattern (API tokens `ks_...`, console session and
device tokens `ksc_...` and `ksd_...`, any Authorization value, a bearer or basic credential,
the session cookie, `password=` and `secret=` fields); and values registered with
`register_secret` (the admin key, the console password, webhook secrets) are replaced wherever
they appear, also escaped as a log line or URL would quote them.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import traceback
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import quote, quote_plus

REDACTED = "[redacted]"
_SECRET_KEY = re.compile(r"(api_key|admin_key|secret|password|token|private|authorization)", re.I)
# Credentials by shape; each keeps its name (group 1) and loses its value.
_SECRET_PATTERNS = (
    # Keysmith's tokens: API (daemon.licensing.access.TOKEN_PREFIX), console session and
    # device ones (daemon.console.auth); after a digit too (`%20ks_`, `\x00ks_`).
    re.compile(r"((?<![A-Za-z])ks[cd]?_)[A-Za-z0-9_.-]{8,}"),
    # An Authorization header as a library quotes it, whatever its scheme; a bearer or basic
    # credential anywhere (at least 8 characters, not only letters: never an ordinary word).
    re.compile(r"(\bauthorization:\s*)[^\r\n'\"\\]+", re.I),
    re.compile(r"(\b(?:bearer|basic)\s+)(?=[^\s'\"\\,;]*[^A-Za-z\s'\"\\,;])[^\s'\"\\,;]{8,}", re.I),
    re.compile(r"(keysmith_console\W{1,4})[^\s'\"\\,;]+"),  # daemon.console.auth.COOKIE
    re.compile(r"(\b(?:password|passwd|secret|api_key|admin_key)=)[^\s&'\"\\,;]+", re.I),
)
# A registered value this short would mask ordinary words: refused (every real secret is longer).
MIN_SECRET_LENGTH = 8
_BARE_VALUE = re.compile(r"^[^\s\"=]+$")
_LEVEL_NAMES = {"WARNING": "WARN", "CRITICAL": "FATAL"}
# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)

_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def _spellings(value: str) -> set[str]:
    """`value` as it may appear in a line: as is, quoted by repr or JSON, URL-encoded, and
    the body lines of a PEM (logged line by line or with its newlines escaped)."""
    found = {
        value,
        repr(value)[1:-1],
        repr(value.encode())[2:-1],
        json.dumps(value)[1:-1],
        quote(value, safe=""),
        quote_plus(value, safe=""),
    }
    found.update(
        line for line in value.splitlines() if len(line) >= 16 and not line.startswith("-----")
    )
    return {spelling for spelling in found if len(spelling) >= MIN_SECRET_LENGTH}


def register_secret(value: str | None) -> None:
    """Never print `value` in a log line (the admin key, a private key PEM, the console
    password, a webhook secret)."""
    if not value or len(value) < MIN_SECRET_LENGTH:
        return
    with _secrets_lock:
        _secrets.update(_spellings(value))


def redact(text: str) -> str:
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(rf"\g<1>{REDACTED}", text)
    return text


def context_of(record: logging.LogRecord) -> dict[str, Any]:
    """The key=value context attached to a record, secrets masked."""
    context: dict[str, Any] = {}
    for key, value in vars(record).items():
        if key in _STANDARD_ATTRS or key.startswith("_"):
            continue
        if key == "context" and isinstance(value, dict):
            context.update(value)
        else:
            context[key] = value
    return {k: (REDACTED if _SECRET_KEY.search(k) else v) for k, v in context.items()}


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _level(record: logging.LogRecord) -> str:
    return _LEVEL_NAMES.get(record.levelname, record.levelname)


def _exception_text(record: logging.LogRecord) -> str | None:
    if not record.exc_info or record.exc_info[0] is None:
        return None
    return "".join(traceback.format_exception(*record.exc_info)).rstrip()


def _text_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if _BARE_VALUE.match(text):
        return text
    return json.dumps(text)  # quoted, with newlines escaped: the line stays one line


def _redacted(value: Any) -> Any:
    """`value` with every secret masked, before it is quoted or escaped into a line (where a
    secret's spelling would change)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _redacted(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(item) for item in value]
    if value is None or isinstance(value, int | float):
        return value
    return redact(str(value))


def _fields(record: logging.LogRecord) -> tuple[str, dict[str, Any]]:
    """The record's message and its context (with `exc`, the folded traceback), redacted."""
    context = context_of(record)
    exc = _exception_text(record)
    if exc:
        context["exc"] = exc
    return redact(record.getMessage()), _redacted(context)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message, context = _fields(record)
        parts = [_timestamp(record), _level(record), record.name, message.replace("\n", "\\n")]
        parts += [f"{key}={_text_value(value)}" for key, value in context.items()]
        return redact(" ".join(parts))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message, context = _fields(record)
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": _level(record),
            "logger": record.name,
            "message": message,
        }
        for key, value in context.items():
            line.setdefault(key, value)
        return redact(json.dumps(line, default=str))


def _malformed_requests_are_not_errors(record: logging.LogRecord) -> bool:
    """aiohttp logs every unparsable request (a port scan, a broken client) as an ERROR with a
    traceback. That is the client's fault and already answered with a 400: one INFO line."""
    exc = record.exc_info[1] if record.exc_info else None
    if exc is not None and type(exc).__module__ == "aiohttp.http_exceptions":
        record.levelno, record.levelname = logging.INFO, "INFO"
        record.msg, record.args = f"refused a malformed request: {exc}", ()
        record.exc_info = record.exc_text = None
    return True


def setup_logging(
    log_format: str = "text", *, stream: TextIO | None = None, level: int = logging.INFO
) -> None:
    """Send every logger's records to stderr in the chosen format (replaces earlier setup)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # aiohttp's access log would print every request path; metrics count requests instead.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.server").addFilter(_malformed_requests_are_not_errors)
    # What libraries and threads would print on stderr themselves goes through the redaction.
    logging.captureWarnings(True)
    threading.excepthook = _log_thread_error


def _log_thread_error(args: threading.ExceptHookArgs) -> None:
    logging.getLogger("keysmith").error(
        f"thread {args.thread.name if args.thread else '?'} ended with an unexpected error",
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )
