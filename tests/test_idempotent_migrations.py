"""Every version on IDEMPOTENT_MIGRATIONS is proven idempotent, on a database full of realistic
rows: run it again through the real self-heal path and the schema and data dump must not change.
A version that fails here cannot stay on the allowlist."""

from __future__ import annotations

import pytest

from daemon.migrate.source import load_source
from daemon.schema import IDEMPOTENT_MIGRATIONS
from tests import kit
from tests.seed import seed

LATEST = kit.latest_version()


@pytest.mark.parametrize("version", sorted(IDEMPOTENT_MIGRATIONS))
def test_allowlisted_migration_is_idempotent_at_every_later_version(tmp_path, version):
    for schema in sorted({version, LATEST}):
        db = tmp_path / f"at-v{schema}.db"
        kit.apply_range(db, upto=schema)
        conn = kit.connect(db)
        seed(conn, schema)
        before = kit.dump(conn)
        kit.rerun(db, version)
        kit.rerun(db, version)
        assert kit.dump(conn) == before, f"re-running {version} at schema v{schema} changed data"
        kit.assert_db_clean(conn)
        conn.close()


def test_the_allowlist_names_only_migrations_that_exist():
    known = {m.version for m in load_source(kit.MIGRATIONS)}
    assert known >= IDEMPOTENT_MIGRATIONS
