"""Realistic data for the benchmarks, from the test suite's `tests/seed.py` (one source of truth).

`seed(conn, version, scale)` writes about 260-300 rows per unit of scale across every licensing
table. Generating rows in Python is the slow part, so the realistic variant seeds one "golden"
database once and copies its rows into each tool's database (whose ledger the tool wrote itself).
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
for folder in (REPO, REPO / "tests"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from seed import seed  # noqa: E402  (tests/ is not a package)

BYTES_PER_UNIT = 134_000  # measured: scale 200 -> 26.8 MB at schema 11; refined by calibrate()


def seed_database(db: Path, version: int, scale: int) -> dict[str, int]:
    """Seed `db` (already at schema `version`) in one transaction; returns rows per table."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("BEGIN")
        rows = seed(conn, version, scale)
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return rows


def scale_for_rows(rows: int) -> int:
    """The seed scale that gives about `rows` rows (seed.py: ~294 rows per unit at schema 11)."""
    return max(1, round(rows / 294))


def scale_for_megabytes(megabytes: float, bytes_per_unit: float = BYTES_PER_UNIT) -> int:
    return max(1, round(megabytes * 1_000_000 / bytes_per_unit))


def calibrate(db: Path, version: int, probe_scale: int = 40) -> float:
    """Bytes per unit of scale on this schema, measured by seeding a throwaway copy."""
    probe = db.with_name(db.stem + "-calibrate.db")
    probe.write_bytes(db.read_bytes())
    before = probe.stat().st_size
    seed_database(probe, version, probe_scale)
    grown = probe.stat().st_size - before
    for suffix in ("", "-wal", "-shm"):
        Path(f"{probe}{suffix}").unlink(missing_ok=True)
    return grown / probe_scale


def copy_rows(golden: Path, target: Path) -> None:
    """Replace every licensing table's rows in `target` with `golden`'s (same schema assumed).

    Tool bookkeeping tables (names starting with '_', dbmate's and yoyo's) are left alone.
    """
    conn = sqlite3.connect(target, isolation_level=None)
    try:
        conn.execute("PRAGMA foreign_keys=OFF")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("ATTACH DATABASE ? AS golden", (str(golden),))
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT name FROM golden.sqlite_master WHERE type = 'table' AND name NOT LIKE "
                "'\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
            )
        ]
        conn.execute("BEGIN")
        for name in tables:
            conn.execute(f'DELETE FROM main."{name}"')
            conn.execute(f'INSERT INTO main."{name}" SELECT * FROM golden."{name}"')
        has_sequence = conn.execute(
            "SELECT count(*) FROM golden.sqlite_master WHERE name = 'sqlite_sequence'"
        ).fetchone()[0]
        if has_sequence:
            conn.execute("DELETE FROM main.sqlite_sequence WHERE name NOT LIKE '\\_%' ESCAPE '\\'")
            conn.execute(
                "INSERT INTO main.sqlite_sequence SELECT * FROM golden.sqlite_sequence "
                "WHERE name NOT LIKE '\\_%' ESCAPE '\\'"
            )
        conn.execute("COMMIT")
        conn.execute("DETACH DATABASE golden")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def total_rows(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        from seed import count_rows

        return sum(count_rows(conn).values())
    finally:
        conn.close()


def megabytes(db: Path) -> float:
    return os.path.getsize(db) / 1_000_000


def timed_seed(db: Path, version: int, scale: int) -> tuple[int, float]:
    """Seed and return (rows written, seconds)."""
    started = time.perf_counter()
    rows = seed_database(db, version, scale)
    return sum(rows.values()), time.perf_counter() - started
