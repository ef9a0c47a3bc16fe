"""The three timed scenarios, run the same way for every tool: apply all, no-op, one pending.

Runs are interleaved (rep 1 of every tool, then rep 2, ...) so that load from other processes on
a shared machine spreads over all tools instead of landing on one. Peak memory comes from
separate runs of the same kind under GNU time (see harness.measure), so timed runs carry no
wrapper. Every timed run is checked afterwards (exit status and the resulting schema): a tool
that did not do the work gets no figure.
"""

from __future__ import annotations

import shutil
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

from harness import BenchError, Series, can_measure_memory, measure
from tools import Tool, fresh_database, snapshot
from workload import SHELL_FORMATS, Workload, sqlx_files

SCENARIOS = ("apply all", "no-op", "one pending")

# Bookkeeping tables of the tools: excluded when comparing what each tool built.
_TOOL_TABLE_PREFIXES = ("_", "sqlite_", "schema_migrations", "yoyo_")


def user_schema(db: Path) -> set[tuple[str, str]]:
    """(type, name) of every table, index, view and trigger the migrations made."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT type, name FROM sqlite_master").fetchall()
    finally:
        conn.close()
    return {(t, n) for t, n in rows if not n.lower().startswith(_TOOL_TABLE_PREFIXES)}


def progress(message: str) -> None:
    """Progress goes to stderr, so stdout holds only the tables."""
    print(message, file=sys.stderr, flush=True)


Seeder = Callable[[Path, int], None]  # (database, schema version it is at) -> adds rows


def run_scenarios(
    workload: Workload,
    tools: list[Tool],
    reps: int,
    workdir: Path,
    *,
    seed: Seeder | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, list[Series]]:
    """Time every scenario for every tool; returns scenario -> one Series per tool."""
    log = log or progress
    memory = can_measure_memory()
    expected = _reference_schema(workload, workdir / "reference")
    results = {name: [Series(t.name, note=t.note) for t in tools] for name in SCENARIOS}
    versions = [int(p.name.partition("_")[0]) for p in sqlx_files(workload.sqlx)]

    log(f"  apply all: {workload.count} migrations x {len(tools)} tools x {reps} runs")
    for tool in tools:  # warm-up, untimed: page cache, and .pyc files for the Python tools
        db = fresh_database(workdir / "warm-up" / _slug(tool))
        _timed(tool, db, workload.source(tool.fmt, "full"))
        shutil.rmtree(db.parent)
    for rep in range(reps):
        for tool, series in zip(tools, results["apply all"], strict=True):
            db = fresh_database(workdir / "apply" / _slug(tool) / str(rep))
            series.samples.append(_timed(tool, db, workload.source(tool.fmt, "full")))
            _check(tool, db, expected)
            shutil.rmtree(db.parent)
            if memory:
                db = fresh_database(workdir / "apply" / _slug(tool) / f"{rep}-memory")
                series.rss.append(_peak_rss(tool, db, workload.source(tool.fmt, "full")))
                shutil.rmtree(db.parent)

    log("  one pending: all but the last applied" + (" and rows seeded" if seed else ""))
    bases = {}
    for tool in tools:
        db = fresh_database(workdir / "base" / _slug(tool))
        _timed(tool, db, workload.source(tool.fmt, "minus_last"))
        if seed:
            seed(db, versions[-2])
        bases[tool.name] = snapshot(db, workdir / "base-snapshot" / _slug(tool))
        shutil.rmtree(db.parent)
    noop_dbs = {}
    for rep in range(reps):
        for tool, series in zip(tools, results["one pending"], strict=True):
            db = snapshot(bases[tool.name], workdir / "pending" / _slug(tool) / str(rep))
            state = "last_only" if tool.fmt in SHELL_FORMATS else "full"
            series.samples.append(_timed(tool, db, workload.source(tool.fmt, state)))
            _check(tool, db, expected)
            if memory:
                copy = snapshot(bases[tool.name], workdir / "pending" / _slug(tool) / "memory")
                series.rss.append(_peak_rss(tool, copy, workload.source(tool.fmt, state)))
                shutil.rmtree(copy.parent)
            if rep == reps - 1 and tool.has_noop:
                noop_dbs[tool.name] = db  # everything applied: the no-op's starting point
            else:
                shutil.rmtree(db.parent)
    for tool in tools:
        shutil.rmtree(bases[tool.name].parent)

    log("  no-op: everything applied")
    for _ in range(reps):
        for tool, series in zip(tools, results["no-op"], strict=True):
            if tool.name in noop_dbs:
                db = noop_dbs[tool.name]
                series.samples.append(_timed(tool, db, workload.source(tool.fmt, "full")))
                if memory:
                    series.rss.append(_peak_rss(tool, db, workload.source(tool.fmt, "full")))
    for tool in tools:
        if tool.name in noop_dbs:
            _check(tool, noop_dbs[tool.name], expected)
            shutil.rmtree(noop_dbs[tool.name].parent)
    return results


def _timed(tool: Tool, db: Path, source: Path):
    try:
        return measure(tool.argv(db, source), cwd=tool.cwd)
    except BenchError as e:
        raise BenchError(f"{tool.name} failed on {db}: {e}") from e


def _peak_rss(tool: Tool, db: Path, source: Path) -> float:
    sample = measure(tool.argv(db, source), cwd=tool.cwd, memory=True)
    assert sample.rss_mb is not None
    return sample.rss_mb


def _check(tool: Tool, db: Path, expected: set[tuple[str, str]]) -> None:
    built = user_schema(db)
    if built != expected:
        missing = sorted(expected - built)[:5]
        extra = sorted(built - expected)[:5]
        raise BenchError(
            f"{tool.name} left a different schema in {db}: missing {missing}, unexpected {extra}"
        )


def _reference_schema(workload: Workload, folder: Path) -> set[tuple[str, str]]:
    """What applying every migration builds, made by the stdlib floor's bare loop."""
    from tools import stdlib_floor

    db = fresh_database(folder)
    floor = stdlib_floor()
    measure(floor.argv(db, workload.source("sqlx", "full")), cwd=floor.cwd)
    schema = user_schema(db)
    shutil.rmtree(folder)
    return schema


def _slug(tool: Tool) -> str:
    return tool.name.replace(" ", "-")
