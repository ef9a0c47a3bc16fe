"""Checking request fields, with messages that say which field and what it must be.

Works on plain dicts (a parsed JSON body, or a query string as a dict), so the API can use
it without the service knowing about HTTP, and the service can trust what it is given.
Every failure is a `BadRequest` naming the field. The bounds on free-form JSON also apply when
such a value is read back from the database (`stored_json`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from daemon.licensing.errors import BadRequest

SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?$")
SLUG_RULE = "1-64 characters of a-z, 0-9, '-' and '_', starting and ending with a letter or digit"
MAX_TEXT = 2000
MAX_SATS = 21_000_000 * 100_000_000
MAX_UNIX = 253_402_300_799  # 9999-12-31T23:59:59Z
# Free-form JSON (product metadata) is stored, then encoded into every catalogue listing.
# Python's JSON encoder recurses once per level and fails near 1,000 levels (less inside a
# request handler's stack), so the bound sits far below that, and a size bound keeps one field
# from dominating every listing that carries it.
MAX_JSON_DEPTH = 32
MAX_JSON_BYTES = 16 * 1024


def text(
    body: Mapping[str, Any],
    name: str,
    *,
    required: bool = False,
    max_len: int = 200,
    allow_empty: bool = False,
) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise BadRequest(f"'{name}' is required")
        return None
    if not isinstance(value, str):
        raise BadRequest(f"'{name}' must be a string, got {_kind(value)}")
    if not value and not allow_empty:
        raise BadRequest(f"'{name}' must not be empty")
    if len(value) > max_len:
        raise BadRequest(f"'{name}' must be at most {max_len} characters, got {len(value)}")
    if "\x00" in value:
        raise BadRequest(f"'{name}' must not contain NUL characters")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:  # JSON can carry lone surrogates ("\ud800")
            raise BadRequest(f"'{name}' is not valid Unicode text") from e
    return value


def slug(body: Mapping[str, Any], name: str, *, required: bool = False) -> str | None:
    value = text(body, name, required=required, max_len=64)
    if value is not None and not SLUG.match(value):
        raise BadRequest(f"'{name}' must be a slug: {SLUG_RULE}; got {value!r}")
    return value


def integer(
    body: Mapping[str, Any],
    name: str,
    *,
    required: bool = False,
    minimum: int = 0,
    maximum: int = 2**53,
) -> int | None:
    value = body.get(name)
    if value is None:
        if required:
            raise BadRequest(f"'{name}' is required")
        return None
    # bool is an int subclass in Python, but `true` is not a number in JSON.
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"'{name}' must be an integer, got {_kind(value)}")
    if not minimum <= value <= maximum:
        raise BadRequest(f"'{name}' must be between {minimum} and {maximum}, got {value}")
    return value


def boolean(body: Mapping[str, Any], name: str, *, required: bool = False) -> bool | None:
    value = body.get(name)
    if value is None:
        if required:
            raise BadRequest(f"'{name}' is required")
        return None
    if not isinstance(value, bool):
        raise BadRequest(f"'{name}' must be true or false, got {_kind(value)}")
    return value


def slug_list(body: Mapping[str, Any], name: str, *, max_items: int = 64) -> list[str] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, list):
        raise BadRequest(f"'{name}' must be a list of slugs, got {_kind(value)}")
    if len(value) > max_items:
        raise BadRequest(f"'{name}' holds at most {max_items} items, got {len(value)}")
    for item in value:
        if not isinstance(item, str) or not SLUG.match(item):
            raise BadRequest(f"every item of '{name}' must be a slug: {SLUG_RULE}; got {item!r}")
    if len(set(value)) != len(value):
        raise BadRequest(f"'{name}' lists the same slug twice")
    return list(value)


def json_object(body: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadRequest(f"'{name}' must be a JSON object, got {_kind(value)}")
    problem = json_bounds_problem(value)
    if problem is not None:
        raise BadRequest(f"'{name}' {problem}")
    return value


def stored_json(raw: object) -> Any:
    """A JSON column read back from the database, held to the same bounds as a request field.

    ValueError says why it cannot be used: a row written by an older version or by hand may be
    invalid, or nested so deeply that decoding or re-encoding it would fail.
    """
    if not isinstance(raw, str | bytes):
        raise ValueError(f"it is {_kind(raw)}, not JSON text")
    try:
        value = json.loads(raw)
    except RecursionError as e:
        raise ValueError("it nests too deeply to decode") from e
    problem = json_bounds_problem(value)
    if problem is not None:
        raise ValueError(f"it {problem}")
    return value


def json_bounds_problem(value: object) -> str | None:
    """Why a decoded JSON value is too deep or too large to store and list, or None."""
    depth = nesting_depth(value)
    if depth > MAX_JSON_DEPTH:
        return f"nests {depth} levels deep; at most {MAX_JSON_DEPTH} levels are allowed"
    size = len(json.dumps(value))  # safe to encode now that the depth is bounded
    if size > MAX_JSON_BYTES:
        return f"is {size} bytes as JSON; at most {MAX_JSON_BYTES} bytes are allowed"
    return None


def nesting_depth(value: object) -> int:
    """Levels of objects and arrays (a scalar is 0, `{}` is 1). A loop, not recursion: the
    value being measured may be deeper than the interpreter's recursion limit allows."""
    deepest = 0
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        pending.extend((child, depth + 1) for child in children)
    return deepest


def catalog(body: Mapping[str, Any], name: str) -> list[dict[str, str]] | None:
    """An entitlements catalog: a list of {slug, name, description?}."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > 64:
        raise BadRequest(f"'{name}' must be a list of at most 64 entitlement definitions")
    entries = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise BadRequest(f"'{name}[{index}]' must be an object with slug and name")
        entries.append(
            {
                "slug": slug(item, "slug", required=True),
                "name": text(item, "name", required=True),
                "description": text(item, "description", max_len=MAX_TEXT, allow_empty=True) or "",
            }
        )
    if len({entry["slug"] for entry in entries}) != len(entries):
        raise BadRequest(f"'{name}' defines the same entitlement slug twice")
    return entries


def timestamp(body: Mapping[str, Any], name: str) -> int | None:
    """Unix seconds, given as an integer or as an ISO 8601 string with a timezone."""
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as e:
            raise BadRequest(f"'{name}' must be unix seconds or an ISO 8601 time") from e
        if parsed.tzinfo is None:
            raise BadRequest(f"'{name}' must say its timezone (e.g. end with 'Z')")
        seconds = int(parsed.timestamp())
        # A valid ISO time can still lie past 9999-12-31 in UTC, which no reader could print.
        if not 1 <= seconds <= MAX_UNIX:
            raise BadRequest(f"'{name}' must be between 1970 and 9999-12-31T23:59:59Z")
        return seconds
    return integer(body, name, minimum=1, maximum=MAX_UNIX)


def query_int(
    query: Mapping[str, str], name: str, *, default: int, minimum: int, maximum: int
) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw, 10)
    except ValueError as e:
        raise BadRequest(f"query parameter '{name}' must be an integer, got {raw[:40]!r}") from e
    if not minimum <= value <= maximum:
        raise BadRequest(f"query parameter '{name}' must be between {minimum} and {maximum}")
    return value


def query_bool(query: Mapping[str, str], name: str) -> bool:
    raw = query.get(name, "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise BadRequest(f"query parameter '{name}' must be true or false")
    return raw in ("true", "1")


def _kind(value: object) -> str:
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)
