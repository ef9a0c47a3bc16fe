"""What an action returns, and the two shapes StartOS reads it in.

StartOS 0.4 reads the version "1" result: a title, a message, and nothing, one value, or a
group of named values. StartOS 0.3.5 (and 0.4's legacy adapter) reads version "0": one message
and one optional value. Every action builds a `Result` once; `--legacy` derives the old shape
from it, so the two front ends can never say different things.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Value:
    """One value the operator reads, copies or scans; `name` and `description` label it inside
    a group."""

    value: str
    name: str = ""
    description: str | None = None
    copyable: bool = False
    qr: bool = False
    masked: bool = False

    def v1(self) -> dict[str, Any]:
        return {
            "type": "single",
            "value": self.value,
            "copyable": self.copyable,
            "qr": self.qr,
            "masked": self.masked,
        }

    def v1_member(self) -> dict[str, Any]:
        return {
            "type": "single",
            "name": self.name,
            "description": self.description,
            "value": self.value,
            "copyable": self.copyable,
            "qr": self.qr,
            "masked": self.masked,
        }


@dataclass(frozen=True)
class Result:
    """An action's outcome. `value` is one Value, a tuple of them (a group), or None."""

    title: str
    message: str | None
    value: Value | tuple[Value, ...] | None = None

    def v1(self) -> dict[str, Any]:
        if self.value is None:
            shown = None
        elif isinstance(self.value, Value):
            shown = self.value.v1()
        else:
            shown = {"type": "group", "value": [member.v1_member() for member in self.value]}
        return {"version": "1", "title": self.title, "message": self.message, "result": shown}

    def legacy(self) -> dict[str, Any]:
        """The 0.3.5 shape: a group becomes one text value, a line per member."""
        message = self.message or self.title
        if self.value is None:
            return _v0(message, None, copyable=False, qr=False)
        if isinstance(self.value, Value):
            return _v0(message, self.value.value, copyable=self.value.copyable, qr=self.value.qr)
        lines = []
        for member in self.value:
            detail = f" ({member.description})" if member.description else ""
            lines.append(f"{member.name}: {member.value}{detail}")
        return _v0(message, "\n".join(lines), copyable=True, qr=False)


def _v0(message: str, value: str | None, *, copyable: bool, qr: bool) -> dict[str, Any]:
    return {"version": "0", "message": message, "value": value, "copyable": copyable, "qr": qr}
