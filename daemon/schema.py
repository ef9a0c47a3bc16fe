"""Keysmith's own schema policy, the one place the generic migrator (daemon/migrate) is told
about this application: where its migrations are and which of them may be run twice.

Kept to `os` alone: `python -m daemon migrate run` imports it, and a no-op run must start in a
few milliseconds.
"""

import os

# The `migrations/` folder shipped beside the `daemon` package (repository checkout or image).
MIGRATIONS_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "migrations"
)

# Versions certified safe to run twice (same end state), re-run when their checksum no longer
# matches and no cosmetic proof exists. tests/test_idempotent_migrations.py proves each one by
# dump comparison; a version that fails it cannot stay here. Never add an ALTER TABLE ADD COLUMN
# migration: SQLite has no ADD COLUMN IF NOT EXISTS.
IDEMPOTENT_MIGRATIONS: frozenset[int] = frozenset({9})
