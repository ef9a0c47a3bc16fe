"""Log lines: one per event on stderr, `timestamp LEVEL logger message key=value ...`.

StartOS shows the container's stdout/stderr in its Logs page, so every line must stand alone:
exceptions are folded into the line instead of spilling a multi-line traceback. Context comes
from `extra={...}` on the logging call (either flat keys or a `context` dict). With
KEYSMITH_LOG_FORMAT=json each line is one JSON object instead.

Secrets never reach the output: context keys that name a secret are masked, and values
registered with `register_secret` are replaced wherever they appear in a line.
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

REDACTED = "[redacted]"
_SECRET_KEY = re.compile(r"(api_key|admin_key|secret|password|token|private|authorization)", re.I)
_BARE_VALUE = re.compile(r"^[^\s\"=]+$")
_LEVEL_NAMES = {"WARNING": "WARN", "CRITICAL": "FATAL"}
# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)

_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Never print `value` in a log line (the admin key, a private key PEM and its lines)."""
    if not value:
        return
    with _secrets_lock:
        _secrets.add(value)
        # A PEM may be logged line by line or with its newlines escaped; mask its body lines too.
        for line in value.splitlines():
            if len(line) >= 16 and not line.startswith("-----"):
                _secrets.add(line)


def redact(text: str) -> str:
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
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


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage().replace("\n", "\\n")
        parts = [_timestamp(record), _level(record), record.name, message]
        context = context_of(record)
        exc = _exception_text(record)
        if exc:
            context["exc"] = exc
        parts += [f"{key}={_text_value(value)}" for key, value in context.items()]
        return redact(" ".join(parts))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": _level(record),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in context_of(record).items():
            line.setdefault(key, value)
        exc = _exception_text(record)
        if exc:
            line["exc"] = exc
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
