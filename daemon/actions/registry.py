"""The one declaration of every action: its metadata, its input form, and the input check.

`python -m daemon action --catalogue` prints these declarations as JSON; the StartOS 0.4
package (startos/actions.json) builds its SDK actions and input forms from that file, and the
0.3.5 manifest's input-specs are derived from the same fields (`legacy_input_spec`). The form
and the check read the same `Field`, so they can never disagree on what is accepted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from daemon.actions.results import Result
from daemon.settings import Settings

FieldKind = Literal["text", "textarea", "number", "toggle", "select"]
Statuses = Literal["any", "only-running", "only-stopped"]
NOTHING_CHANGED = "Nothing was changed."


class ActionError(Exception):
    """An action that could not do its job; the message is shown to the operator as is."""


class InputError(ActionError):
    """The input does not fit the action's form; raised before anything is read or written."""


@dataclass(frozen=True)
class Field:
    id: str
    kind: FieldKind
    name: str
    description: str
    required: bool = False
    default: str | int | bool | None = None
    placeholder: str | None = None
    masked: bool = False
    min: int | None = None
    max: int | None = None
    integer: bool = True
    choices: Mapping[str, str] | None = None
    min_length: int | None = None
    max_length: int | None = None

    def catalogue(self) -> dict[str, Any]:
        numeric = self.kind == "number"
        textual = self.kind in ("text", "textarea")
        return {
            "id": self.id,
            "kind": self.kind,
            "name": self.name,
            "description": self.description,
            "required": self.required,
            "default": self.default,
            "placeholder": self.placeholder,
            "masked": self.masked,
            "min": self.min if numeric else None,
            "max": self.max if numeric else None,
            "integer": self.integer and numeric,
            "choices": dict(self.choices) if self.choices is not None else None,
            "minLength": self.min_length if textual else None,
            "maxLength": self.max_length if textual else None,
        }

    def check(self, value: Any) -> Any:
        """The value as the action uses it, or an InputError naming this field."""
        if value is None or (self.kind in ("text", "textarea") and value == ""):
            if self.required:
                raise self._error("is required")
            return self.default
        if self.kind in ("text", "textarea"):
            return self._text(value)
        if self.kind == "number":
            return self._number(value)
        if self.kind == "toggle":
            if not isinstance(value, bool):
                raise self._error(f"must be true or false, got {_kind(value)}")
            return value
        if not isinstance(value, str) or value not in (self.choices or {}):
            choices = ", ".join(self.choices or {})
            raise self._error(f"must be one of {choices}; got {value!r}")
        return value

    def _text(self, value: Any) -> str:
        if not isinstance(value, str):
            raise self._error(f"must be text, got {_kind(value)}")
        if self.min_length is not None and len(value) < self.min_length:
            raise self._error(f"must be at least {self.min_length} characters")
        if self.max_length is not None and len(value) > self.max_length:
            raise self._error(f"must be at most {self.max_length} characters, got {len(value)}")
        return value

    def _number(self, value: Any) -> int | float:
        # bool is an int in Python, but `true` is not a number in JSON.
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not math.isfinite(value):
            raise self._error(f"must be a number, got {_kind(value)}")
        if self.integer:
            if value != int(value):
                raise self._error(f"must be a whole number, got {value}")
            value = int(value)
        if (self.min is not None and value < self.min) or (
            self.max is not None and value > self.max
        ):
            raise self._error(f"must be between {self.min} and {self.max}, got {value}")
        return value

    def _error(self, what: str) -> InputError:
        return InputError(f"'{self.id}' ({self.name}) {what}. {NOTHING_CHANGED}")


Run = Callable[[Settings, dict[str, Any]], Result]


@dataclass(frozen=True)
class Action:
    id: str
    name: str
    description: str
    run: Run
    warning: str | None = None
    allowed_statuses: Statuses = "any"
    group: str | None = None
    input: tuple[Field, ...] | None = None
    # Runs even when the settings are malformed (with the defaults for the bad ones), because
    # it is how the operator repairs the settings file.
    repairs_settings: bool = False
    # The form's current values (StartOS 0.4 shows the form filled with them), or None.
    prefill: Callable[[Settings], dict[str, Any]] | None = None

    def catalogue(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "warning": self.warning,
            "allowedStatuses": self.allowed_statuses,
            "group": self.group,
            "visibility": "enabled",
            "input": None if self.input is None else [f.catalogue() for f in self.input],
            "prefill": self.prefill is not None,
        }

    def parse(self, raw: Any) -> dict[str, Any]:
        """Check INPUT against the form: unknown fields, types, limits. Changes nothing."""
        if self.input is None:
            if raw is not None:
                raise InputError(f"The action '{self.id}' takes no input. {NOTHING_CHANGED}")
            return {}
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise InputError(
                f"The input of '{self.id}' must be a JSON object, got {_kind(raw)}. "
                f"{NOTHING_CHANGED}"
            )
        known = {f.id for f in self.input}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise InputError(
                f"Unknown field '{unknown[0]}' for the action '{self.id}'; its fields are "
                f"{', '.join(f.id for f in self.input)}. {NOTHING_CHANGED}"
            )
        return {f.id: f.check(raw.get(f.id)) for f in self.input}


def text(
    id: str,
    name: str,
    description: str,
    *,
    required: bool = False,
    max_length: int = 200,
    placeholder: str | None = None,
    area: bool = False,
) -> Field:
    return Field(
        id,
        "textarea" if area else "text",
        name,
        description,
        required=required,
        placeholder=placeholder,
        min_length=1 if required else None,
        max_length=max_length,
    )


def number(
    id: str,
    name: str,
    description: str,
    *,
    minimum: int,
    maximum: int,
    default: int | None = None,
    required: bool = False,
) -> Field:
    return Field(
        id,
        "number",
        name,
        description,
        required=required,
        default=default,
        min=minimum,
        max=maximum,
    )


def toggle(id: str, name: str, description: str, *, default: bool) -> Field:
    return Field(id, "toggle", name, description, default=default)


def select(
    id: str, name: str, description: str, choices: Mapping[str, str], *, default: str
) -> Field:
    return Field(id, "select", name, description, default=default, choices=choices)


def legacy_input_spec(action: Action) -> dict[str, Any] | None:
    """The StartOS 0.3.5 `input-spec` for this action's form (its config-spec format)."""
    if action.input is None:
        return None
    return {f.id: _legacy_value_spec(f) for f in action.input}


def _legacy_value_spec(field: Field) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": field.name, "description": field.description}
    if field.kind in ("text", "textarea"):
        spec.update(type="string", nullable=not field.required, masked=field.masked)
        spec.update(copyable=False, textarea=field.kind == "textarea")
        if field.placeholder is not None:
            spec["placeholder"] = field.placeholder
    elif field.kind == "number":
        low = "*" if field.min is None else field.min
        high = "*" if field.max is None else field.max
        spec.update(type="number", nullable=field.default is None and not field.required)
        spec.update(range=f"[{low},{high}]", integral=field.integer)
    elif field.kind == "toggle":
        spec["type"] = "boolean"
    else:
        spec.update(type="enum", values=list(field.choices or {}))
        spec["value-names"] = dict(field.choices or {})
    if field.default is not None:
        spec["default"] = field.default
    return spec


def _kind(value: object) -> str:
    names = {bool: "true/false", int: "a number", float: "a number", str: "text"}
    names.update({list: "a list", dict: "an object", type(None): "null"})
    return names.get(type(value), type(value).__name__)
