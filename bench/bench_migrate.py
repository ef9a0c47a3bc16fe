"""Keysmith's `migrate run` next to the two floors (issue 3 part 5).

For N generated migrations (default 1,000; each a CREATE TABLE, an INSERT and a CREATE INDEX):
apply all, a no-op run and one pending, each timed as a child process (median of --reps runs with
min and max), next to the sqlite3 shell running the same files (each in BEGIN/COMMIT, WAL +
synchronous=NORMAL; bare, and with sqlx's ledger row in each transaction, the durable work a
migrator does) and floor_stdlib.py (per-file transaction + ledger row; the no-op opens the
database, reads the ledger and hashes the files). Targets: apply all <= 1.15x the shell (printed
against both shells); no-op <= 1.25x the stdlib floor.

    .venv/bin/python bench/bench_migrate.py            # full: 1,000 migrations, 5 runs
    .venv/bin/python bench/bench_migrate.py --quick    # seconds; what the smoke test runs
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import tools
import workload
from harness import BenchError, load_note, scenario_table, target_line
from scenarios import run_scenarios

APPLY_TARGET = 1.15  # apply all, Keysmith / sqlite3 shell
NOOP_TARGET = 1.25  # no-op, Keysmith / stdlib floor


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="generated migrations")
    parser.add_argument("--reps", type=int, default=5, help="timed runs per tool and scenario")
    parser.add_argument("--quick", action="store_true", help="20 migrations, 2 runs")
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a new temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args(argv)
    if args.quick:
        args.count, args.reps = 20, 2
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="keysmith-bench-migrate-"))
    try:
        print(f"# Keysmith migrate vs floors: {args.count} migrations, {args.reps} runs each")
        print(f"({load_note()}; scratch {workdir})\n")
        chosen = [
            tools.keysmith(),
            tools.sqlite_shell(),
            tools.sqlite_shell_ledger(),
            tools.stdlib_floor(),
        ]
        load = workload.build_generated(workdir / "workload", args.count)
        results = run_scenarios(load, chosen, args.reps, workdir / "runs")
        print(render(results, args.count))
    except BenchError as e:
        print(f"bench_migrate: {e}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


def render(results: dict, count: int) -> str:
    """The three tables (ratios against the scenario's floor) and the two target verdicts."""
    by_name = {s: {series.tool: series for series in rows} for s, rows in results.items()}
    out = []
    for scenario, floor_name in (
        ("apply all", "sqlite3 shell"),
        ("no-op", "stdlib floor"),
        ("one pending", "sqlite3 shell"),
    ):
        rows = by_name[scenario]
        out.append(
            scenario_table(
                f"{scenario} ({count} migrations)",
                list(rows.values()),
                keysmith=rows["keysmith"],
                floor=rows[floor_name],
            )
        )
    out.append("Targets (issue 3):")
    apply_rows, noop_rows = by_name["apply all"], by_name["no-op"]
    out.append(
        target_line(
            "apply all, Keysmith / sqlite3 shell",
            apply_rows["keysmith"],
            apply_rows["sqlite3 shell"],
            APPLY_TARGET,
        )
    )
    # The bare shell writes no ledger; the same target against the shell doing that work too.
    out.append(
        target_line(
            "apply all, Keysmith / sqlite3 shell + ledger (like for like)",
            apply_rows["keysmith"],
            apply_rows["sqlite3 shell + ledger"],
            APPLY_TARGET,
        )
    )
    out.append(
        target_line(
            "no-op, Keysmith / stdlib floor",
            noop_rows["keysmith"],
            noop_rows["stdlib floor"],
            NOOP_TARGET,
        )
    )
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
