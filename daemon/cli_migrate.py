"""`python -m daemon migrate status|plan|run`: the migrator's command line.

Exit status: 0 done or nothing to do, 2 blocked (nothing was changed), 1 failed. Kept lean: a
no-op `run` must cost little more than opening the database and hashing the files.
"""

from __future__ import annotations

import argparse
import os
import sys

from daemon import __version__, defaults
from daemon.db import IDEMPOTENT_MIGRATIONS
from daemon.migrate import MigrateError, inspect, run_migrations
from daemon.migrate.plan import Plan

EXIT_OK, EXIT_FAILED, EXIT_BLOCKED = 0, 1, 2


def migrate_main(args: argparse.Namespace) -> int:
    # Only these two settings matter here, so they are read directly rather than through
    # daemon.settings, whose full validation would cost every no-op run more than its work.
    db_path = args.db or os.environ.get(defaults.DB_PATH_VARIABLE) or defaults.DEFAULT_DB_PATH
    migrations = (
        args.migrations
        or os.environ.get(defaults.MIGRATIONS_DIR_VARIABLE)
        or defaults.DEFAULT_MIGRATIONS_DIR
    )
    try:
        idempotent = _parse_versions(args.idempotent)
    except ValueError:
        print(
            f"--idempotent: expected versions like 9,12, got {args.idempotent!r}", file=sys.stderr
        )
        return EXIT_FAILED
    try:
        if args.step == "run":
            return _run(db_path, migrations, idempotent, args.json)
        plan = inspect(db_path, migrations, idempotent)
    except MigrateError as error:
        return _report_error(error, args.json)
    if args.json:
        _print_json(_as_json(plan, include_steps=args.step == "plan"))
    else:
        print(_render(plan, args.step))
    return EXIT_BLOCKED if plan.blockers else EXIT_OK


def _parse_versions(text: str | None) -> frozenset[int]:
    if text is None:
        return IDEMPOTENT_MIGRATIONS
    return frozenset(int(v) for v in text.split(",") if v.strip())


def _run(db_path: str, migrations: str, idempotent: frozenset[int], as_json: bool) -> int:
    outcome = run_migrations(db_path, migrations, idempotent=idempotent, daemon_version=__version__)
    summary = {
        "schema_version": outcome.schema_version,
        "applied": outcome.applied,
        "heals": [heal._asdict() for heal in outcome.heals],
        "backup": str(outcome.backup.path) if outcome.backup else None,
        "seconds": round(outcome.seconds, 4),
    }
    if as_json:
        _print_json(summary)
    elif outcome.applied or outcome.heals:
        for heal in outcome.heals:
            print(f"healed {heal.version} ({heal.action}): {heal.evidence}")
        print(f"applied {len(outcome.applied)} migration(s); schema v{outcome.schema_version}")
    else:
        print(f"nothing to do; schema v{outcome.schema_version}")
    return EXIT_OK


def _report_error(error: MigrateError, as_json: bool) -> int:
    if as_json:
        blockers = getattr(error, "blockers", [])
        _print_json(
            {
                "error": error.reason,
                "message": str(error),
                "blocked": [b._asdict() for b in blockers],
            }
        )
    print(str(error), file=sys.stderr)
    return EXIT_BLOCKED if error.reason == "blocked" else EXIT_FAILED


def _print_json(doc: dict) -> None:
    import json  # only --json pays for it

    print(json.dumps(doc))


def _render(plan: Plan, step: str) -> str:
    if step == "plan":
        return _plan_text(plan)
    return status_report(plan)


def _as_json(plan: Plan, include_steps: bool) -> dict:
    doc: dict = {
        "migrations": [
            {
                "version": f.version,
                "description": f.description,
                "state": f.state,
                "action": f.action,
                "evidence": f.evidence,
            }
            for f in plan.findings
        ],
        "blocked": [f.as_blocker()._asdict() for f in plan.blockers],
        "schema_version": plan.schema_version,
    }
    if include_steps:
        doc["steps"] = [{"version": f.version, "action": f.action} for f in plan.steps]
        doc["backup"] = plan.runs_sql
    return doc


_SQLX_STATUS = {
    "applied": "installed",
    "pending": "pending",
    "modified": "installed (different checksum)",
    "missing": "installed (missing from the migrations folder)",
    "dirty": "installed (failed)",
}


def status_report(plan: Plan) -> str:
    """The `migrate status` text (also what the StartOS action shows)."""
    return "\n".join(_status_lines(plan))


def _status_lines(plan: Plan) -> list[str]:
    """Like `sqlx migrate info`, plus what Keysmith will do about each version and why."""
    lines = []
    for f in plan.findings:
        lines.append(f"{f.version}/{_SQLX_STATUS[f.state]} {f.description}")
        if f.action not in ("none", "apply"):
            lines.append(f"    -> {f.action}: {f.evidence}")
        if f.state == "modified" and f.row and f.migration:
            lines.append(f"    applied migration had checksum {f.row.checksum.hex()}")
            lines.append(f"    local migration has checksum {f.migration.checksum.hex()}")
        if f.remedy:
            lines.append(f"    to fix: {f.remedy}")
        if f.detail:
            lines.extend("    " + line for line in f.detail.splitlines())
    lines.append(f"schema version: {plan.schema_version}")
    return lines


def _plan_text(plan: Plan) -> str:
    if plan.blockers:
        return "blocked; nothing will be changed:\n" + "\n".join(
            f"  {b.as_blocker().line()}\n    to fix: {b.remedy}" for b in plan.blockers
        )
    if not plan.steps:
        return f"nothing to do; schema v{plan.schema_version}"
    lines = ["back up the database first"] if plan.runs_sql else []
    for f in plan.steps:
        why = f": {f.evidence}" if f.evidence else ""
        lines.append(f"{f.action} {f.version} ({f.description}){why}")
    return "\n".join(lines)
