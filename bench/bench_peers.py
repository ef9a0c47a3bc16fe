"""Keysmith next to its peers and floors, on the same workloads (issue 7 part 1).

Tools: Keysmith `migrate run`, dbmate (Go binary from the npm package, called directly),
yoyo-migrations (own virtualenv), the sqlite3 shell floor and the stdlib floor. Workloads:
1. N generated migrations (default 1,000): apply all, no-op, one pending;
2. realistic: the project's own migrations, with ~1 million seeded rows (tests/seed.py) for the
   no-op and one-pending runs;
3. heal cost versus database size (Keysmith only): re-stamp of CRLF drift vs re-running 0009;
4. the pre-migration backup of the largest database next to `cp`.
Each figure is the median of --reps child runs with min and max; wall time, CPU (user+sys via
wait4) and peak RSS; ratios to Keysmith and to the floor.

    .venv/bin/python bench/bench_peers.py --results bench/RESULTS.md   # full (1 GB: ~15 min)
    .venv/bin/python bench/bench_peers.py --quick                      # seconds; the smoke test
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import fill
import heal
import machine
import tools
import workload
from harness import BenchError, Series, fmt_ms, load_note, measure, scenario_table, target_line
from scenarios import progress, run_scenarios

APPLY_FLOOR_TARGET = 1.15
NOOP_FLOOR_TARGET = 1.25

HEADER = """# Migration benchmarks: Keysmith, its peers and the floors

Written by `bench/bench_peers.py` (re-run: `.venv/bin/python bench/bench_peers.py --results
bench/RESULTS.md`; the 1 GB heal variant takes a while). Every figure is a child process timed
from start to exit: the median of several runs with [min–max]; CPU is user+system of the child
(wait4); peak RSS comes from separate runs of the same kind under GNU time, because wait4's
ru_maxrss of a forked child starts at the parent's size. Ratios compare wall-time medians.

How to read them:

- **Process start is part of every figure.** dbmate is a Go binary and the sqlite3 shell a C
  program; Keysmith, yoyo and the stdlib floor are Python programs and pay for starting the
  interpreter first (see "Process start" below). On runs with little work (no-op, one pending)
  that start-up dominates, and no Python tool can match a Go binary there.
- **The floors do only the bare work.** The sqlite3 shell runs each file in BEGIN/COMMIT and
  keeps no ledger; `floor_stdlib.py` adds sqlx's ledger row and, for the no-op, reads the ledger
  and hashes the files. Neither locks, plans, proves drift, keeps provenance or backs up.
- **Keysmith does more than the peers on purpose**: a cross-process lock, a full plan before
  acting, provenance rows (the applied SQL text), and a backup of the database before any SQL
  runs on a database that holds data. The backup is inside its one-pending figures.
- **Same SQL, same journal settings**: every tool starts from the same empty WAL database;
  Keysmith, dbmate, the shell and the stdlib floor run with synchronous=NORMAL; yoyo offers no
  setting and runs with SQLite's default synchronous=FULL.
- The machine is shared (2 cores, other work running): the load average is printed beside
  each section.
"""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="generated migrations")
    parser.add_argument("--reps", type=int, default=5, help="timed runs per tool and scenario")
    parser.add_argument("--rows", type=int, default=1_000_000, help="realistic variant rows")
    parser.add_argument("--sizes", default="10,100,1000", help="heal-cost database sizes, MB")
    parser.add_argument(
        "--big-reruns",
        type=int,
        default=3,
        help="0009 re-runs on the largest database (each backs it up)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 2 runs: seconds")
    parser.add_argument("--skip", default="", help="comma list of: generated,realistic,heal")
    parser.add_argument("--results", type=Path, help="also write the report to this file")
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a new temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args(argv)
    if args.quick:
        args.count, args.reps, args.rows, args.sizes, args.big_reruns = 20, 2, 3000, "1,2", 2
    args.sizes = [float(s) for s in args.sizes.split(",") if s]
    args.skip = {s for s in args.skip.split(",") if s}
    return args


def peer_tools() -> list[tools.Tool]:
    return [
        tools.keysmith(),
        tools.dbmate(),
        tools.yoyo(),
        tools.sqlite_shell(),
        tools.stdlib_floor(),
    ]


def render_scenarios(results: dict[str, list[Series]], label: str) -> str:
    out = []
    for scenario, rows in results.items():
        by_name = {s.tool: s for s in rows}
        floor = by_name["stdlib floor" if scenario == "no-op" else "sqlite3 shell"]
        out.append(
            scenario_table(f"{scenario} — {label}", rows, keysmith=by_name["keysmith"], floor=floor)
        )
    return "\n".join(out)


def render_targets(results: dict[str, list[Series]]) -> str:
    get = {scenario: {s.tool: s for s in rows} for scenario, rows in results.items()}
    lines = [
        target_line(
            "apply all, Keysmith / dbmate",
            get["apply all"]["keysmith"],
            get["apply all"]["dbmate"],
            1.0,
        ),
        target_line(
            "one pending, Keysmith / dbmate",
            get["one pending"]["keysmith"],
            get["one pending"]["dbmate"],
            1.0,
        ),
        target_line(
            "apply all, Keysmith / sqlite3 shell",
            get["apply all"]["keysmith"],
            get["apply all"]["sqlite3 shell"],
            APPLY_FLOOR_TARGET,
        ),
        target_line(
            "no-op, Keysmith / stdlib floor",
            get["no-op"]["keysmith"],
            get["no-op"]["stdlib floor"],
            NOOP_FLOOR_TARGET,
        ),
    ]
    return "\n".join(lines) + "\n"


def startup_table(reps: int) -> str:
    """How long each kind of program takes to start and exit doing nothing useful."""
    dbmate_bin = tools.ensure_dbmate()
    shell = shutil.which("sqlite3") or "sqlite3"
    probes = [
        (
            "python -c pass (the interpreter Keysmith and the stdlib floor use)",
            [sys.executable, "-c", "pass"],
        ),
        (
            "python -I -S -c pass (no site, no editable-install hook)",
            [sys.executable, "-I", "-S", "-c", "pass"],
        ),
        (
            "yoyo's python -c pass (its own venv)",
            [str(tools.ensure_yoyo().parent / "python"), "-c", "pass"],
        ),
        ("dbmate --version (Go)", [str(dbmate_bin), "--version"]),
        ("sqlite3 -version (C)", [shell, "-version"]),
    ]
    lines = ["| program | wall ms median [min–max] |", "|---|---:|"]
    for label, argv in probes:
        series = Series(label, [measure(argv) for _ in range(max(reps, 10))])
        lines.append(
            f"| {label} | {fmt_ms(series.median())} [{fmt_ms(series.low())}–"
            f"{fmt_ms(series.high())}] |"
        )
    return "\n".join(lines) + "\n"


def realistic_seeder(workdir: Path, load: workload.Workload, rows: int):
    """Seed one golden database per schema version, then copy its rows into each tool's db."""
    goldens: dict[int, Path] = {}

    def seed_into(db: Path, version: int) -> None:
        if version not in goldens:
            golden = tools.fresh_database(workdir / f"golden-v{version}")
            floor = tools.stdlib_floor()
            measure(floor.argv(golden, load.source("sqlx", "minus_last")), cwd=floor.cwd)
            made, seconds = fill.timed_seed(golden, version, fill.scale_for_rows(rows))
            progress(
                f"    golden database: {made:,} rows, {fill.megabytes(golden):,.0f} MB, "
                f"seeded in {seconds:.0f} s"
            )
            goldens[version] = golden
        fill.copy_rows(goldens[version], db)

    return seed_into


# Report sections, in order; each is generated by one part of the run.
SECTION_KINDS = {
    "## Machine": "machine",
    "## Process start": "startup",
    "## Realistic": "realistic",
    "## Heal cost": "heal",
    "## Pre-migration backup": "heal",
    "## Findings": "findings",  # written by hand after a run; kept by partial re-runs
}


def section_kind(text: str) -> str:
    heading = text.split("\n", 1)[0]
    if heading.startswith("## ") and "generated migrations" in heading:
        return "generated"
    return next((k for h, k in SECTION_KINDS.items() if heading.startswith(h)), "header")


def merge_report(new: list[str], old_text: str, skipped: set[str]) -> list[str]:
    """The new sections plus, for each part skipped in this run, its section from old_text."""
    old = ["## " + part for part in old_text.split("\n## ")[1:]]
    kept = [part.rstrip("\n") + "\n" for part in old if section_kind(part) in skipped]
    order = ["header", "machine", "startup", "generated", "realistic", "heal", "findings"]
    merged = new + kept
    return sorted(merged, key=lambda part: order.index(section_kind(part)))


def stamp() -> str:
    return f"taken {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {load_note()}"


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="keysmith-bench-peers-", dir="/var/tmp"))
    workdir.mkdir(parents=True, exist_ok=True)
    sections = []
    try:
        progress(f"bench_peers: scratch {workdir}; {load_note()}")
        everyone = peer_tools()
        sections.append(HEADER)
        sections.append("## Machine\n\n" + machine.describe(tools.versions()))
        sections.append(f"## Process start\n\n({stamp()})\n\n" + startup_table(args.reps))
        if "generated" not in args.skip:
            progress(f"generated workload: {args.count} migrations")
            load = workload.build_generated(workdir / "generated", args.count)
            results = run_scenarios(load, everyone, args.reps, workdir / "generated-runs")
            sections.append(
                f"## {args.count} generated migrations\n\n({stamp()}, after the runs)\n\n"
                + render_scenarios(results, f"{args.count} generated migrations")
                + "\nTargets (issues 3 and 7):\n\n"
                + render_targets(results)
            )
        if "realistic" not in args.skip:
            progress(f"realistic workload: project migrations, ~{args.rows:,} rows")
            load = workload.build(workdir / "project", tools.REPO / "migrations")
            seeder = realistic_seeder(workdir / "project-golden", load, args.rows)
            results = run_scenarios(
                load, everyone, args.reps, workdir / "project-runs", seed=seeder
            )
            sections.append(
                f"## Realistic: the project's {load.count} migrations, ~{args.rows:,} rows\n\n"
                "Apply all starts from an empty database; no-op and one pending run over the "
                f"seeded rows ({stamp()}, after the runs).\n\n"
                + render_scenarios(results, f"project migrations, ~{args.rows:,} rows")
            )
        if "heal" not in args.skip:
            keysmith = tools.keysmith()
            heal.disk_check(workdir, 8 * max(args.sizes) / 1000 + 1)
            big = max(args.sizes)
            table, databases = heal.heal_cost(
                keysmith, args.sizes, args.reps, {big: args.big_reruns}, workdir / "heal"
            )
            sections.append(
                f"## Heal cost versus database size (Keysmith)\n\n({stamp()})\n\n" + table
            )
            progress(f"backup cost on the {big:g} MB database")
            sections.append(
                f"## Pre-migration backup versus cp\n\n({stamp()})\n\n"
                + heal.backup_cost(databases[big], args.big_reruns, workdir / "cp")
            )
    except BenchError as e:
        print(f"bench_peers: {e}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print("\n".join(sections))
    if args.results:
        if args.skip and args.results.exists():
            sections = merge_report(sections, args.results.read_text(), args.skip | {"findings"})
        args.results.write_text("\n".join(sections))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
