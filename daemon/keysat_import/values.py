"""Keysat's stored values read the way Keysat reads them, or a refusal naming the row and
column that holds a value Keysat itself would not have written."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from daemon.keysat_import.errors import Refused

Row = dict[str, Any]


class Cell:
    """One row of one Keysat table, so each refusal names `table id column`."""

    def __init__(self, table: str, row: Row) -> None:
        self.table = table
        self.row = row

    def where(self, column: str) -> str:
        key = self.row.get("id", self.row.get("key"))
        return f"{self.table} {key} column {column}"

    def refuse(self, column: str, why: str) -> Refused:
        return Refused(f"{self.where(column)} {why} (value {self.row.get(column)!r})")

    def get(self, column: str, default: Any = None) -> Any:
        # A column a migration before the database's version had not added yet.
        return self.row.get(column, default)

    def time(self, column: str) -> int | None:
        """Keysat stores RFC 3339 text (chrono) or SQLite's 'YYYY-MM-DD HH:MM:SS' (UTC)."""
        text = self.row.get(column)
        if text is None:
            return None
        try:
            moment = datetime.fromisoformat(text)
        except (TypeError, ValueError):
            raise self.refuse(column, "is not a date and time") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return int(moment.timestamp())

    def required_time(self, column: str) -> int:
        at = self.time(column)
        if at is None:
            raise self.refuse(column, "is empty")
        return at

    def choice(self, column: str, allowed: tuple[str, ...]) -> str:
        value = self.row.get(column)
        if value not in allowed:
            raise self.refuse(column, f"is not one of {', '.join(allowed)}")
        return value

    def flag(self, column: str, default: int = 0) -> int:
        value = self.row.get(column, default)
        if value not in (0, 1):
            raise self.refuse(column, "is not 0 or 1")
        return int(value)

    def count(self, column: str, default: int = 0) -> int:
        value = self.row.get(column, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.refuse(column, "is not a whole number of at least 0")
        return value

    def json(self, column: str, kind: type, default: str) -> Any:
        text = self.row.get(column)
        try:
            value = json.loads(default if text is None else text)
        except (TypeError, ValueError):
            raise self.refuse(column, "is not JSON") from None
        if not isinstance(value, kind):
            raise self.refuse(column, f"is not a JSON {'object' if kind is dict else 'array'}")
        return value

    def slugs(self, column: str) -> list[str]:
        value = self.json(column, list, "[]")
        if not all(isinstance(s, str) for s in value):
            raise self.refuse(column, "holds something other than text")
        return value

    def uuid(self, column: str) -> uuid.UUID:
        try:
            return uuid.UUID(self.row[column])
        except (KeyError, TypeError, ValueError):
            raise self.refuse(column, "is not a UUID") from None

    def uuid_text(self, column: str) -> str:
        """The id as Keysat stored it (rows refer to it by that text), once it is a UUID."""
        self.uuid(column)
        return self.row[column]

    def currency(self, column: str, default: str = "SAT") -> str:
        """Keysat's 'SAT' is Keysmith's 'BTC' (amounts in sats either way)."""
        value = self.row.get(column) or default
        if value in ("SAT", "BTC"):
            return "BTC"
        if not (isinstance(value, str) and len(value) == 3 and value.isalpha() and value.isupper()):
            raise self.refuse(column, "is not a three-letter currency code")
        return value
