"""Command-line entry: `python -m daemon serve | health | action | backup | migrate |
import-keysat`.

Each command imports only what it needs: `migrate` must not pay for the web stack, so the
heavier modules are imported inside the function that uses them.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        from daemon.boot import serve_main

        return serve_main()
    if args.command == "health":
        from daemon.health import health_main

        return health_main()
    if args.command == "action":
        from daemon.actions import action_main, catalogue_json, prefill_main

        if args.catalogue:
            print(catalogue_json(), end="")
            return 0
        if args.name is None:
            parser.error("action: give an action NAME, or --catalogue")
        if args.prefill:
            return prefill_main(args.name)
        return action_main(args.name, args.input, legacy=args.legacy)
    if args.command == "backup":
        from daemon.backup_snapshot import backup_main

        return backup_main(args.step)
    if args.command == "migrate":
        from daemon.cli_migrate import migrate_main

        return migrate_main(args)
    if args.command == "import-keysat":
        from daemon.keysat_import import import_main

        return import_main(args.path)
    parser.print_help(sys.stderr)
    return 1


class _Formatter(argparse.HelpFormatter):
    # A fixed width: argparse would otherwise import shutil (and bz2, lzma) for the terminal
    # size on every start, a measurable share of a no-op `migrate run`.
    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=100)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m daemon", description="Keysmith daemon", formatter_class=_Formatter
    )
    commands = parser.add_subparsers(dest="command")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help, formatter_class=_Formatter)

    commands.add_parser(
        "serve",
        help="migrate the database, then serve the licensing API",
        formatter_class=_Formatter,
    )
    command("health", "the StartOS health check (exit 0/60/61/1)")
    action = command("action", "run a StartOS action; prints its result JSON")
    action.add_argument("name", nargs="?", help="the action id (see --catalogue)")
    action.add_argument(
        "input",
        nargs="?",
        help="the action's input as JSON; '-' reads it from stdin; absent or null: no input",
    )
    action.add_argument(
        "--legacy", action="store_true", help="print the StartOS 0.3.5 result shape"
    )
    action.add_argument(
        "--catalogue", action="store_true", help="print every action and its input form as JSON"
    )
    action.add_argument(
        "--prefill", action="store_true", help="print the current values of NAME's form as JSON"
    )
    backup = command("backup", "a consistent snapshot of the live database, or its restore")
    backup.add_argument(
        "step",
        choices=["snapshot", "restore"],
        help="snapshot: copy the live database into backup-snapshot/; restore: put it back",
    )
    migrate = command("migrate", "inspect, apply, revert or accept database migrations")
    migrate.add_argument("step", choices=["status", "plan", "run", "revert", "accept"])
    migrate.add_argument(
        "version", nargs="?", type=int, help="accept: the blocked migration to accept as applied"
    )
    migrate.add_argument(
        "--to",
        type=int,
        help="revert: the applied version to go back to, or 0 for none (default: revert only the "
        "newest applied one); plan/status: what a run (or, below the schema, a revert) to it does",
    )
    migrate.add_argument(
        "--dry-run",
        action="store_true",
        help="revert: show the steps and what each discards, without acting",
    )
    migrate.add_argument(
        "--wait",
        type=float,
        default=30.0,
        help="seconds to wait for another migration of the same database (default 30)",
    )
    migrate.add_argument(
        "--undo",
        action="store_true",
        help="accept: put back the checksum and provenance the acceptance of VERSION replaced",
    )
    migrate.add_argument(
        "--by", help="accept: who accepts the change, for the heal log (default: your user name)"
    )
    migrate.add_argument(
        "--for-startos",
        action="store_true",
        help="word the remedies for a StartOS operator (the package's downgrade runs revert)",
    )
    migrate.add_argument(
        "--db", help="SQLite file (default: $KEYSMITH_DB_PATH or ./data/keysmith.db)"
    )
    migrate.add_argument(
        "--migrations", help="migrations folder (default: $KEYSMITH_MIGRATIONS_DIR or ./migrations)"
    )
    migrate.add_argument(
        "--idempotent",
        help="comma-separated versions certified idempotent (default: the built-in allowlist)",
    )
    migrate.add_argument("--json", action="store_true", help="machine-readable output")
    keysat = command(
        "import-keysat",
        "move a Keysat shop (its keysat.db) into this Keysmith, which must have issued no license",
    )
    keysat.add_argument("path", help="the Keysat SQLite database file, read only")
    return parser
