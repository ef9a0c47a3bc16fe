"""What the Upgrades and Overview pages show about the database's life, read, never written.

Everything comes from product-agnostic readers: the migrator's plan (`daemon.migrate.inspect`:
the ledger row, the finding and its evidence, and the diff of a changed migration against the
text kept in provenance), its heal log, its pre-upgrade backups, the lifecycle's status record
and boot history, and the health check's own explanation of a blocked boot.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from daemon.health import degraded_message, safe_mode_message, verdict
from daemon.migrate import HealEntry, MigrateError, heal_history, inspect
from daemon.migrate.backup import list_backups
from daemon.migrate.ledger import AppliedRow, read_ledger
from daemon.migrate.plan import Finding
from daemon.remedies import startos_words
from daemon.schema import IDEMPOTENT_MIGRATIONS
from daemon.settings import Settings
from daemon.status import BLOCKED, FAILED, boots_path, read_boots


@dataclass(frozen=True)
class Backup:
    name: str
    size_bytes: int
    taken_at: str
    age: str
    restores_schema: str


@dataclass(frozen=True)
class Upgrades:
    migrations: list[Finding]
    remedies: dict[int, str]  # what to do about a refused version, worded as the health check
    ledger: dict[int, AppliedRow]  # the ledger row of every applied version
    heals: list[HealEntry]
    backups: list[Backup]
    boots: list[dict[str, Any]]
    read_error: str | None  # the migrator's own message when the database could not be read


def health_text(record: dict[str, Any]) -> str:
    """The state as the health check reports it (the same words StartOS shows)."""
    _code, out, err = verdict(record)
    return (out or err).strip()


def blocked_explanation(record: dict[str, Any]) -> str | None:
    """While blocked or failed: the health check's explanation, word for word."""
    if record.get("state") in (BLOCKED, FAILED):
        return safe_mode_message(record)
    if record.get("degraded"):
        return degraded_message(record["degraded"])
    return None


def boots(settings: Settings) -> list[dict[str, Any]]:
    """Every recorded boot, newest first."""
    return read_boots(boots_path(settings.status_path))


def upgrades(settings: Settings) -> Upgrades:
    booted = boots(settings)
    backups = [_backup(b) for b in list_backups(settings.db_path)]
    try:
        plan = inspect(settings.db_path, settings.migrations_dir, IDEMPOTENT_MIGRATIONS)
        heals = heal_history(settings.db_path)
        rows = _ledger_rows(settings.db_path)
    except MigrateError as e:
        return Upgrades([], {}, {}, [], backups, booted, str(e))
    except sqlite3.Error as e:
        return Upgrades([], {}, {}, [], backups, booted, f"the ledger could not be read: {e}")
    remedies = {f.version: startos_words(f.remedies) for f in plan.findings if f.remedies}
    return Upgrades(list(plan.findings), remedies, rows, heals, backups, booted, None)


def _ledger_rows(db_path: Path) -> dict[int, AppliedRow]:
    if not db_path.exists():
        return {}
    conn = sqlite3.connect(f"file:{quote(str(db_path))}?mode=ro", uri=True, timeout=5.0)
    try:
        return read_ledger(conn).rows
    finally:
        conn.close()


def _backup(info: Any) -> Backup:
    taken = datetime.strptime(info.created_at[:15], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    return Backup(
        name=info.path.name,
        size_bytes=info.size_bytes,
        taken_at=taken.strftime("%Y-%m-%d %H:%M UTC"),
        age=age(time.time() - taken.timestamp()),
        restores_schema=info.schema_version,
    )


def age(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"


def size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    value = n / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
