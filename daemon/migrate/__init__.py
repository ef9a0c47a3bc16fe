"""The self-healing, sqlx-compatible migrator. Knows nothing of HTTP, licensing or StartOS: it
works on any sqlx-format migrations folder and any SQLite file.

Read the heal policy top to bottom in `plan.py`; the proofs are in `drift.py`.
"""

from daemon.migrate.errors import (
    BackupRefused,
    Blocked,
    Blocker,
    DatabaseInUse,
    DatabaseLocked,
    DatabaseUnreadable,
    DiskFull,
    Interrupted,
    LockTimeout,
    MigrateError,
    MigrationFailed,
    OrphanedWal,
    Reason,
    Remedy,
    RestoreRefused,
    SourceError,
    StorageError,
)
from daemon.migrate.ledger import HealEntry
from daemon.migrate.runner import Outcome, heal_history, heals_recorded, inspect, run_migrations

__all__ = [
    "BackupRefused",
    "Blocked",
    "Blocker",
    "DatabaseInUse",
    "DatabaseLocked",
    "DatabaseUnreadable",
    "DiskFull",
    "HealEntry",
    "Interrupted",
    "LockTimeout",
    "MigrateError",
    "MigrationFailed",
    "OrphanedWal",
    "Outcome",
    "Reason",
    "Remedy",
    "RestoreRefused",
    "SourceError",
    "StorageError",
    "heal_history",
    "heals_recorded",
    "inspect",
    "run_migrations",
]
