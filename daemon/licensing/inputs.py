"""The bounds every request model shares, and the checks msgspec cannot declare.

`daemon.licensing.models` builds its field types from these limits; the free-form JSON bounds
also apply when such a value is read back from the database (`stored_json`, and `shown_json`
for every JSON column an answer carries), and `timestamp` reads the two forms a time may take
(unix seconds, or ISO 8601 with a timezone).
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypeVar

from daemon.licensing.errors import BadRequest

log = logging.getLogger("keysmith.licensing")
J = TypeVar("J", dict[str, Any], list[Any])

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


def stored_json(raw: object) -> Any:
    """A JSON column read back from the database, held to the same bounds as a request field.

    ValueError says why it cannot be used: a row written by an older version or by hand may be
    invalid, or nested so deeply that decoding or re-encoding it would fail.
    """
    if not isinstance(raw, str | bytes):
        raise ValueError(f"it is {_kind(raw)}, not JSON text")
    # The stored text is measured as it is: no re-encoding on every read (validate reads one).
    problem = _size_problem(len(raw))
    if problem is not None:
        raise ValueError(f"it {problem}")
    # Whether json.loads runs out of stack first depends on how deep the caller's stack is,
    # so both ways of being too deep give one reason: a row is then warned about once.
    too_deep = f"it nests more than {MAX_JSON_DEPTH} levels deep"
    try:
        value = json.loads(raw)
    except RecursionError:
        raise ValueError(too_deep) from None
    if nesting_depth(value) > MAX_JSON_DEPTH:
        raise ValueError(too_deep)
    return value


def shown_json(
    kind: str, row_id: object, column: str, raw: object, fallback: J, remedy: str | None = None
) -> J:
    """A stored JSON column to answer with. A row that an older version or a hand edit left
    invalid, too deep or too large, or not of the fallback's kind (an object where a list
    belongs) is answered with `fallback` and one warning, so one row can never take a whole
    listing (or a validation) down."""
    try:
        value = stored_json(raw)
    except ValueError as e:
        reason = str(e)
    else:
        if type(value) is type(fallback):
            return value
        reason = f"it is {_kind(value)}, not {_kind(fallback)}"
    _fell_back(kind, row_id, column, reason, fallback, remedy)
    return fallback


def shown_names(
    kind: str, row_id: object, column: str, raw: object, remedy: str | None = None
) -> list[str]:
    """A stored JSON list of names (event types, scopes), read like `shown_json`: anything
    but a list of texts is answered as none, with one warning."""
    names = shown_json(kind, row_id, column, raw, [], remedy)
    if all(isinstance(n, str) for n in names):
        return names
    _fell_back(kind, row_id, column, "it is not a list of names", [], remedy)
    return []


def _fell_back(
    kind: str, row_id: object, column: str, reason: str, fallback: object, remedy: str | None
) -> None:
    answered = json.dumps(fallback)
    if remedy is None:
        remedy = (
            f"rewrite its {column} as JSON like {answered} within {MAX_JSON_DEPTH} levels to "
            "show it again"
        )
    warn_unshowable(kind, str(row_id), column, reason, answered, remedy)


# Once per row and reason, not once per answer: the public catalogue is polled by every client.
@functools.lru_cache(maxsize=1024)
def warn_unshowable(
    kind: str, row_id: str, column: str, reason: str, answered: str, remedy: str
) -> None:
    """One warning that a stored value was answered in a safe form in place of what is stored."""
    log.warning(
        f"{kind} {row_id}: its stored {column} cannot be shown ({reason}); answered "
        f"{answered} in its place. The row is unchanged; {remedy}",
        extra={"row_id": row_id, "column": column},
    )


def json_bounds_problem(value: object) -> str | None:
    """Why a decoded JSON value is too deep or too large to store and list, or None."""
    # Encoding is safe once the depth is bounded.
    return _depth_problem(value) or _size_problem(len(json.dumps(value)))


def _depth_problem(value: object) -> str | None:
    depth = nesting_depth(value)
    if depth > MAX_JSON_DEPTH:
        return f"nests {depth} levels deep; at most {MAX_JSON_DEPTH} levels are allowed"
    return None


def _size_problem(size: int) -> str | None:
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
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"'{name}' must be unix seconds or an ISO 8601 time, got {_kind(value)}")
    if not 1 <= value <= MAX_UNIX:
        raise BadRequest(f"'{name}' must be between 1 and {MAX_UNIX}, got {value}")
    return value


def _kind(value: object) -> str:
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)
