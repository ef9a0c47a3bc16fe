"""Bytes and forms in, answers out: decoding into the request models (`models`), encoding
answers, and refusals worded as this project words them (the field first, then what it must
be). msgspec validates while it decodes; only a refused request pays for the wording.
"""

from __future__ import annotations

import json
import re
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

import msgspec
import msgspec.inspect

from daemon.licensing import inputs, models
from daemon.licensing.errors import BadRequest

T = TypeVar("T")

_DECODERS: dict[type, msgspec.json.Decoder] = {}


def decode(model: type[T], raw: bytes) -> T:
    """A JSON body as `model`; BadRequest naming the field otherwise. Empty body = `{}`."""
    decoder = _DECODERS.get(model)
    if decoder is None:
        decoder = _DECODERS[model] = msgspec.json.Decoder(model)
    try:
        return decoder.decode(raw if raw.strip() else b"{}")
    except msgspec.ValidationError as e:
        if str(e).startswith("Expected `object`, got"):
            raise BadRequest("the request body must be a JSON object") from None
        raise BadRequest(_named(model, str(e))) from None
    except (msgspec.DecodeError, RecursionError) as e:
        # The refusal path only: the stdlib parser says what is wrong with the body in
        # plainer words than msgspec's (not UTF-8, NaN, a lone surrogate in a field).
        problem = _body_problem(raw)
        raise BadRequest(problem or f"the request body is not valid JSON: {e}") from None


def parse(model: type[T], fields: Mapping[str, Any], *, from_text: bool = False) -> T:
    """`fields` (a form, an action's values, a query string) as `model`, or BadRequest.

    `from_text`: the values are text (a query string), so digits and true/false convert."""
    try:
        return msgspec.convert(dict(fields), model, strict=not from_text)
    except msgspec.ValidationError as e:
        message = _named(model, str(e))
        if from_text:
            message = f"query parameter {message}"
        raise BadRequest(message) from None


def encode(value: object) -> bytes:
    return _ENCODER.encode(value)


_ENCODER = msgspec.json.Encoder()
_KINDS = {
    "int": "an integer",
    "str": "a string",
    "bool": "true or false",
    "object": "a JSON object",
    "array": "a list",
    "null": "null",
    "float": "a number",
}


def _body_problem(raw: bytes) -> str | None:
    """What is wrong with the body as a whole (not UTF-8, not JSON, too deep, not an object,
    a string that is not Unicode), or None when it is a well-formed JSON object."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "the request body is not UTF-8 text"
    try:
        body = json.loads(text, parse_constant=_not_json)
    except RecursionError:
        return "the request body nests JSON too deeply"
    except ValueError as e:
        return f"the request body is not valid JSON: {e}"
    if not isinstance(body, dict):
        return "the request body must be a JSON object"
    for name, value in body.items():
        if isinstance(value, str) and not _is_unicode(value):
            return f"'{name}' is not valid Unicode text"
    return None


def _not_json(constant: str) -> None:
    # Python's decoder accepts NaN and Infinity; JSON (RFC 8259) does not.
    raise ValueError(f"{constant} is not a JSON value")


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # JSON can carry lone surrogates ("\ud800")
        return False
    return True


def _named(model: type, message: str) -> str:
    """msgspec's `Expected `int`, got `bool` - at `$.name`` as this project says it:
    the field first, then what it must be."""
    message = message.removesuffix(" - at `$`")
    text, sep, where = message.rpartition(" - at `$.")
    if not sep:
        if message.startswith("Object contains unknown field `"):
            name = message.split("`")[1]
            return f"'{name}' is not a field of this request; nothing was written"
        if message.startswith("Object missing required field `"):
            return f"'{message.split('`')[1]}' is required"
        return message
    field = where.rstrip("`")
    expected = _EXPECTED.match(text)
    if expected is not None:
        # "or null" is noise: an absent optional field is null, and is always allowed.
        kinds = [k.strip() for k in expected[1].split("|") if k.strip() != "null"]
        wanted = " or ".join(_KINDS.get(k, k) for k in kinds)
        return f"'{field}' must be {wanted}, got {_GOT.get(expected[2], expected[2])}"
    bound = _BOUND.match(text)
    between = _range_of(model, field)
    if bound is not None and between is not None:
        return f"'{field}' must be between {between[0]} and {between[1]}"
    if bound is not None:
        kind, length, sign, limit = bound.groups()
        least = sign.startswith(">")
        if length and least and limit == "1":
            return f"'{field}' must not be empty"
        unit = " characters" if kind == "str" else " items" if length else ""
        word = "at least" if least else "at most"
        return f"'{field}' must be {word} {limit}{unit}"
    if text.startswith("Invalid enum value"):
        choices = _choices(model, field.split(".")[0].split("[")[0])
        return f"'{field}' must be one of {', '.join(choices)}; {text[:1].lower()}{text[1:]}"
    if text.startswith("Expected `str` matching regex "):
        # msgspec quotes the pattern as Python's repr would, backslashes doubled.
        quoted = text.removeprefix("Expected `str` matching regex ")[1:-1]
        rule = _RULES.get(quoted.replace("\\\\", "\\"))
        if rule is not None:
            return f"'{field}' {rule}"
    return f"'{field}': {text}"


_GOT = {**_KINDS, "int": "a number", "bool": "a boolean", "object": "an object"}
_RULES = {
    inputs.SLUG.pattern: f"must be a slug: {inputs.SLUG_RULE}",
    models.NO_NUL: "must not contain NUL characters",
    models.CODE_PATTERN: f"must be {inputs.SLUG_RULE} (any case)",
    models.EMAIL_PATTERN: "must be an email address",
    models.UUID_PATTERN: "must be a UUID",
    models.CURRENCY_PATTERN: "must be a 3-letter upper-case code, e.g. 'USD'",
}
_EXPECTED = re.compile(r"^Expected `([^`]+)`, got `([^`]+)`$")
_BOUND = re.compile(r"^Expected `(\w+)`( of length)? ([<>]=?) (-?\d+)$")


def _choices(model: type, name: str) -> tuple[str, ...]:
    hint = typing.get_type_hints(model, include_extras=True).get(name)
    found: list[str] = []
    pending = [hint]
    while pending:
        item = pending.pop()
        if typing.get_origin(item) is Literal:
            found.extend(str(arg) for arg in typing.get_args(item) if str(arg) not in found)
        else:
            pending.extend(typing.get_args(item))
    return tuple(found)


def _range_of(model: type, name: str) -> tuple[int, int] | None:
    """An integer field's declared (ge, le), when it has both: "between" reads better."""
    info = msgspec.inspect.type_info(model)
    for field in getattr(info, "fields", ()):
        if field.name != name:
            continue
        kinds = [field.type]
        while kinds:
            kind = kinds.pop()
            if isinstance(kind, msgspec.inspect.IntType) and None not in (kind.ge, kind.le):
                return kind.ge, kind.le
            if isinstance(kind, msgspec.inspect.Metadata):  # a described type
                kinds.append(kind.type)
            kinds.extend(getattr(kind, "types", ()))
    return None
