"""Heal cost versus database size, and the pre-migration backup next to `cp` (issue 7 part 1).

On databases of several sizes (the project's migrations, rows from tests/seed.py):
- re-stamp: an additive migration re-saved with CRLF line endings. Keysmith proves the drift is
  cosmetic and rewrites one checksum: no SQL, no backup, so the time should not grow with size;
- re-run: the 0009 rebuild run again, as the original fix did on every mismatch of an allowlisted
  version (here forced by a real, non-cosmetic edit to 0009). Keysmith backs up the database
  first, so this figure includes a full backup.
Runs alternate between two migration folders, so every run is a real heal; each is checked in
`_keysmith_heal_log` afterwards.
"""

from __future__ import annotations

import shutil
import sqlite3
import sys
from pathlib import Path

import fill
from harness import BenchError, Sample, Series, fmt_ms, measure
from scenarios import progress
from tools import REPO, Tool, fresh_database

RESTAMP_VERSION = 6  # 0006_machine_details: ALTER TABLE ... ADD COLUMN, never safe to re-run
RERUN_VERSION = 9  # 0009_discount_codes_set_price: the certified-idempotent rebuild


def migration_folders(source: Path, root: Path) -> dict[str, Path]:
    """'lf': the project's files; 'crlf': one additive file re-saved CRLF; 'edited': 0009 with a
    statement added (not provably cosmetic, so on the allowlist it is re-run)."""
    folders = {}
    for name in ("lf", "crlf", "edited"):
        folder = root / name
        if folder.exists():
            shutil.rmtree(folder)
        shutil.copytree(source, folder)
        folders[name] = folder
    crlf = _file_of(folders["crlf"], RESTAMP_VERSION)
    crlf.write_bytes(crlf.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    edited = _file_of(folders["edited"], RERUN_VERSION)
    edited.write_bytes(edited.read_bytes() + b"\n-- benchmark: force a re-run\nSELECT 1;\n")
    return folders


def _file_of(folder: Path, version: int) -> Path:
    for path in folder.glob("*_*.sql"):
        if int(path.name.partition("_")[0]) == version:
            return path
    raise BenchError(f"no migration {version} in {folder}")


def heal_count(db: Path, action: str, version: int) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(
            "SELECT count(*) FROM _keysmith_heal_log WHERE action = ? AND version = ?",
            (action, version),
        ).fetchone()[0]
    finally:
        conn.close()


def _heal_run(keysmith: Tool, db: Path, folder: Path, action: str, version: int) -> Sample:
    before = heal_count(db, action, version)
    sample = measure(keysmith.argv(db, folder), cwd=keysmith.cwd)
    if heal_count(db, action, version) != before + 1:
        raise BenchError(f"keysmith did not {action} migration {version} on {db} with {folder}")
    return sample


def sized_database(keysmith: Tool, folder: Path, target_mb: float, workdir: Path) -> Path:
    """Migrate an empty database with Keysmith, then seed rows until it is about target_mb."""
    db = fresh_database(workdir)
    measure(keysmith.argv(db, folder), cwd=keysmith.cwd)
    version = max(int(p.name.partition("_")[0]) for p in folder.glob("*_*.sql"))
    per_unit = fill.calibrate(db, version) if target_mb >= 5 else fill.BYTES_PER_UNIT
    rows, seconds = fill.timed_seed(db, version, fill.scale_for_megabytes(target_mb, per_unit))
    progress(f"    seeded {rows:,} rows ({fill.megabytes(db):,.0f} MB) in {seconds:.0f} s")
    return db


def heal_cost(
    keysmith: Tool, sizes_mb: list[float], reps: int, rerun_reps: dict[float, int], workdir: Path
) -> tuple[str, dict[float, Path]]:
    """The re-stamp vs re-run table; returns it and the databases (kept for the backup bench)."""
    folders = migration_folders(REPO / "migrations", workdir / "migrations")
    lines = [
        "| database | rows | discount rows | re-stamp ms median [min–max] | re-run 0009 ms median "
        "[min–max] | re-run / re-stamp |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    databases = {}
    medians: list[tuple[float, float, float]] = []  # (MB, re-stamp, re-run)
    for size in sizes_mb:
        progress(f"  heal cost: building a {size:g} MB database")
        db = sized_database(keysmith, folders["lf"], size, workdir / f"db-{size:g}mb")
        databases[size] = db
        restamp, rerun = Series("re-stamp"), Series("re-run")
        progress(f"  heal cost at {fill.megabytes(db):,.0f} MB: {reps} re-stamps")
        for rep in range(reps):
            drifted = rep % 2 == 0  # lf -> crlf is a re-stamp, and crlf -> lf is one too
            folder = folders["crlf" if drifted else "lf"]
            restamp.samples.append(_heal_run(keysmith, db, folder, "restamp", RESTAMP_VERSION))
        if reps % 2:
            _heal_run(keysmith, db, folders["lf"], "restamp", RESTAMP_VERSION)  # back to lf
        count = rerun_reps.get(size, reps)
        progress(f"  heal cost at {fill.megabytes(db):,.0f} MB: {count} re-runs of 0009")
        for rep in range(count):
            folder = folders["edited" if rep % 2 == 0 else "lf"]
            rerun.samples.append(_heal_run(keysmith, db, folder, "rerun", RERUN_VERSION))
        if count % 2:
            _heal_run(keysmith, db, folders["lf"], "rerun", RERUN_VERSION)
        _prune_backups(db)
        medians.append((fill.megabytes(db), restamp.median(), rerun.median()))
        lines.append(
            f"| {fill.megabytes(db):,.0f} MB | {fill.total_rows(db):,} | {_discount_rows(db):,} "
            f"| {_cell(restamp)} | {_cell(rerun)} | {rerun.median() / restamp.median():.1f}x |"
        )
    (small_mb, small_stamp, small_run), (big_mb, big_stamp, big_run) = medians[0], medians[-1]
    lines += [
        "",
        f"- re-stamp at {big_mb:,.0f} MB / at {small_mb:,.0f} MB: {big_stamp / small_stamp:.2f}x "
        "(target: the same time whatever the size, ~1x)",
        f"- re-run of 0009 at {big_mb:,.0f} MB / at {small_mb:,.0f} MB: "
        f"{big_run / small_run:.1f}x (grows with the data: it rebuilds two tables, after a "
        "full backup)",
    ]
    return "\n".join(lines) + "\n", databases


def _cell(series: Series) -> str:
    low, high = fmt_ms(series.low()), fmt_ms(series.high())
    return f"{fmt_ms(series.median())} [{low}–{high}] ({len(series.samples)} runs)"


def _discount_rows(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return sum(
            conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("discount_codes", "discount_redemptions")
        )
    finally:
        conn.close()


def _prune_backups(db: Path) -> None:
    """The re-runs leave backups beside the database; drop them to spare the disk."""
    shutil.rmtree(db.parent / "backups", ignore_errors=True)


def backup_cost(db: Path, reps: int, workdir: Path) -> str:
    """Keysmith's pre-migration backup (timed by the migrator itself) next to `cp` of the file.

    The backup is taken the way `migrate run` takes it: a pending migration on the database,
    run in-process through the public `run_migrations`, whose Outcome carries the backup's own
    duration. `cp` does not fsync, Keysmith's backup does; `cp` + `sync FILE` is shown too.
    """
    sys.path.insert(0, str(REPO))
    from daemon import __version__
    from daemon.migrate import run_migrations
    from daemon.schema import IDEMPOTENT_MIGRATIONS

    workdir.mkdir(parents=True, exist_ok=True)
    folder = workdir / "backup-migrations"
    shutil.copytree(REPO / "migrations", folder, dirs_exist_ok=True)
    backup, plain, synced = Series("backup"), Series("cp"), Series("cp + sync")
    for rep in range(reps):
        copy = workdir / f"cp-{rep}.db"
        plain.samples.append(measure(["cp", str(db), str(copy)]))
        copy.unlink()
        started = measure(["cp", str(db), str(copy)])
        flushed = measure(["sync", str(copy)])
        synced.samples.append(Sample(started.wall + flushed.wall, 0.0, 0.0))
        copy.unlink()
        probe = folder / f"{9000 + rep}_bench_backup_probe.sql"
        probe.write_text(f"CREATE TABLE bench_backup_probe_{rep} (x INTEGER);\n")
        outcome = run_migrations(
            db, folder, idempotent=IDEMPOTENT_MIGRATIONS, daemon_version=__version__
        )
        if outcome.backup is None or outcome.applied != [9000 + rep]:
            raise BenchError(f"expected one backup and migration {9000 + rep}, got {outcome}")
        backup.samples.append(Sample(outcome.backup.seconds, 0.0, 0.0))
        size = outcome.backup.size_bytes
        _prune_backups(db)
    mb = fill.megabytes(db)
    lines = [
        f"Database: {mb:,.0f} MB; backup file {size / 1_000_000:,.0f} MB; {reps} runs each, "
        "alternating, page cache warm for all of them.",
        "",
        "| copy | ms median [min–max] | MB/s | ×cp |",
        "|---|---:|---:|---:|",
    ]
    for series in (backup, plain, synced):
        lines.append(
            f"| {_label(series.tool)} | {fmt_ms(series.median())} [{fmt_ms(series.low())}–"
            f"{fmt_ms(series.high())}] | {mb / series.median():,.0f} "
            f"| {series.median() / plain.median():.2f}x |"
        )
    return "\n".join(lines) + "\n"


def _label(name: str) -> str:
    return {
        "backup": "Keysmith pre-migration backup (file copy under the write lock, fsync, rename)",
        "cp": "`cp` (no fsync)",
        "cp + sync": "`cp` then `sync FILE` (fsync)",
    }[name]


def disk_check(workdir: Path, needed_gb: float) -> None:
    free = shutil.disk_usage(workdir).free / 1e9
    if free < needed_gb:
        raise BenchError(
            f"{workdir} has {free:.1f} GB free; the heal benchmark needs about {needed_gb:.0f} GB"
        )
