"""`python -m daemon migrate status|plan|run|revert|accept`: the migrator's command line.

Exit status: 0 done or nothing to do, 2 blocked (nothing was changed), 1 failed. Kept lean: a
no-op `run` must cost little more than opening the database and hashing the files.

This is one of the migrator's two hosts (the other is the daemon's boot, for a StartOS
operator): it words the migrator's remedy codes for a shell user, naming paths and commands.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from daemon import __version__, defaults, schema
from daemon.migrate import MigrateError, inspect, run_migrations
from daemon.migrate.errors import Blocker, Remedy
from daemon.migrate.plan import BACKUP, Action, Plan, State
from daemon.remedies import reunite_wal

TYPE_CHECKING = False  # typing stays unimported for the no-op run
if TYPE_CHECKING:
    from daemon.migrate.apply import Progress
    from daemon.migrate.revert_plan import RevertPlan

EXIT_OK, EXIT_FAILED, EXIT_BLOCKED = 0, 1, 2


def migrate_main(args: argparse.Namespace) -> int:
    os.umask(0o077)  # the database and its backups hold secrets: owner only
    # Only these two settings matter here, so they are read directly rather than through
    # daemon.settings, whose full validation would cost every no-op run more than its work.
    # Absolute, so the heal log and the messages name the files wherever they are read from.
    db_path = os.path.abspath(
        args.db or os.environ.get(defaults.DB_PATH_VARIABLE) or defaults.DEFAULT_DB_PATH
    )
    migrations = (
        args.migrations or os.environ.get(defaults.MIGRATIONS_DIR_VARIABLE) or schema.MIGRATIONS_DIR
    )
    try:
        idempotent = _parse_versions(args.idempotent)
    except ValueError:
        print(
            f"--idempotent: expected versions like 9,12, got {args.idempotent!r}; nothing was "
            "changed",
            file=sys.stderr,
        )
        return EXIT_BLOCKED
    words = _words_for(args, db_path)
    try:
        if args.step == "run":
            return _run(db_path, migrations, idempotent, args)
        if args.step == "revert":
            return _revert(db_path, migrations, args, dry_run=args.dry_run)
        if args.step == "accept":
            return _accept(db_path, migrations, idempotent, args)
        plan = inspect(db_path, migrations, idempotent)
        if args.to is not None and args.to < (plan.schema_version or 0):
            # Below the schema: what a revert to it would do, without acting.
            return _revert(db_path, migrations, args, dry_run=True)
        if args.to is not None:
            plan = _forward_to(db_path, migrations, idempotent, plan, args.to)
    except MigrateError as error:
        return _report_error(error, args.json, words)
    if args.json:
        _print_json(_as_json(plan, words, include_steps=args.step == "plan"))
    else:
        print(_plan_text(plan, words) if args.step == "plan" else status_report(plan, words))
    return EXIT_BLOCKED if plan.blockers else EXIT_OK


def _forward_to(
    db_path: str, migrations: str, idempotent: frozenset[int], plan: Plan, target: int
) -> Plan:
    """The plan of `run` up to `target`: a version in the folder (or applied, or 0)."""
    from daemon.migrate.errors import BadTarget

    known = sorted({f.version for f in plan.findings})
    if target != 0 and target not in known:
        raise BadTarget(target, known, "a version in the migrations folder or the ledger")
    return inspect(db_path, migrations, idempotent, target)


def schema_words(version: int | None) -> str:
    """A schema version as the messages say it: a full revert leaves none at all."""
    return "no schema (empty database)" if version is None else f"schema v{version}"


Words = Callable[..., str]


def _words_for(args: argparse.Namespace, db_path: str) -> Words:
    if args.for_startos:
        from daemon.remedies import startos_words

        return startos_words
    return ShellWords(db_path)


class ShellWords:
    """The migrator's remedy codes in words for someone at a shell, about one database."""

    def __init__(self, db_path: str) -> None:
        self.db = db_path
        self.backups = os.path.join(os.path.dirname(os.path.abspath(db_path)), "backups")

    def __call__(self, remedies: tuple[Remedy, ...], params: dict[str, str] | None = None) -> str:
        return "; or ".join(self.one(remedy, params or {}) for remedy in remedies)

    def one(self, remedy: Remedy, params: dict[str, str]) -> str:
        db, backups = self.db, self.backups
        match remedy:
            case Remedy.INSTALL_PREVIOUS_VERSION:
                return "install the previous version of Keysmith"
            case Remedy.INSTALL_NEWER_VERSION:
                return "install that newer Keysmith again (the one that migrated this database)"
            case Remedy.RESTORE_BACKUP:
                return (
                    f"stop the daemon, then restore the newest backup in {backups} with "
                    f"`KEYSMITH_DB_PATH={db} python -m daemon action restore-backup`"
                )
            case Remedy.RESTORE_FULL_BACKUP:
                return f"put back {db} from your own last full backup"
            case Remedy.CHOOSE_OLDER_BACKUP:
                return f"with the daemon stopped, copy an older backup from {backups} over {db}"
            case Remedy.FREE_DISK_SPACE:
                return (
                    f"free disk space for {params.get('folder', backups)} (old files in "
                    f"{backups} can go), then run it again"
                )
            case Remedy.MAKE_VOLUME_WRITABLE:
                folder = params.get("folder", db)
                return f"make {folder} writable and give it free space, then run it again"
            case Remedy.STOP_OTHER_PROCESS:
                return (
                    f"stop the daemon and any other process that has {db} open "
                    f"(`fuser {params.get('lock_path', db)}` lists them), then run it again"
                )
            case Remedy.WAIT_FOR_OTHER_MIGRATION:
                holder = params.get("holder", "another process")
                return f"wait for the other migration ({holder}) to finish, then run it again"
            case Remedy.REPORT_TO_MAINTAINERS:
                return "report this error to the Keysmith maintainers"
            case Remedy.RETRY:
                return "run it again: the remaining migrations run then"
            case Remedy.KEEP_CURRENT_VERSION:
                return (
                    "keep running the Keysmith whose migrations folder applied these migrations; "
                    "it works on this database as it is"
                )
            case Remedy.ACCEPT_CHANGE:
                versions = params.get("version", "").split(", ") if params.get("version") else []
                commands = (
                    " and ".join(
                        f"`python -m daemon migrate accept {v} --db {db}`" for v in versions
                    )
                    or f"`python -m daemon migrate accept <the blocked version> --db {db}`"
                )
                return (
                    "only if the change was deliberate and the database already has what the new "
                    f"text describes: {commands} (it runs no SQL)"
                )
            case Remedy.CHECK_STATUS:
                return f"see what is blocked with `python -m daemon migrate status --db {db}`"
            case Remedy.RETRY_OR_STOP_HOLDER:
                holder = params.get("db", db)
                return f"retry, or stop it: `fuser {holder}` lists the processes that have it open"
            case Remedy.CHOOSE_APPLIED_TARGET:
                return f"give --to one of the applied versions ({params.get('applied')}) or 0"
            case Remedy.REUNITE_WAL:
                return reunite_wal(params.get("wal", f"{db}-wal"))


def _parse_versions(text: str | None) -> frozenset[int]:
    if text is None:
        return schema.IDEMPOTENT_MIGRATIONS
    return frozenset(int(v) for v in text.split(",") if v.strip())


def _run(
    db_path: str, migrations: str, idempotent: frozenset[int], args: argparse.Namespace
) -> int:
    outcome = run_migrations(
        db_path,
        migrations,
        idempotent=idempotent,
        daemon_version=__version__,
        on_progress=_print_progress,
        lock_timeout=args.wait,
    )
    summary = {
        "schema_version": outcome.schema_version,
        "applied": outcome.applied,
        "heals": [heal._asdict() for heal in outcome.heals],
        "backup": str(outcome.backup.path) if outcome.backup else None,
        "seconds": round(outcome.seconds, 4),
    }
    if args.json:
        _print_json(summary)
    elif outcome.applied or outcome.heals:
        for heal in outcome.heals:
            print(f"healed {heal.version} ({heal.action}): {heal.evidence}")
        print(
            f"applied {len(outcome.applied)} migration(s); {schema_words(outcome.schema_version)}"
        )
    else:
        print(f"nothing to do; {schema_words(outcome.schema_version)}")
    return EXIT_OK


def _revert(db_path: str, migrations: str, args: argparse.Namespace, *, dry_run: bool) -> int:
    from daemon.migrate.revert import revert_migrations

    outcome = revert_migrations(
        db_path,
        migrations,
        daemon_version=__version__,
        target=args.to,
        on_plan=_print_revert_plan,
        on_progress=_print_progress,
        lock_timeout=args.wait,
        dry_run=dry_run,
    )
    plan, discards = outcome.plan, outcome.plan.discards
    if args.json:
        _print_json(
            {
                "dry_run": dry_run,
                "schema_version": outcome.schema_version,
                "target": plan.target,
                "steps": [
                    {"version": f.version, "action": f.action, "evidence": f.evidence}
                    for f in plan.steps
                ],
                "reverted": outcome.reverted,
                "discarded" if not dry_run else "discards": {
                    str(v): list(what) for v, what in discards.items()
                },
                "backup": str(outcome.backup.path) if outcome.backup else bool(plan.steps),
                "seconds": round(outcome.seconds, 4),
            }
        )
    elif dry_run:
        print(_revert_plan_text(plan) if plan.steps else "nothing to revert")
        if plan.steps:
            print("dry run: nothing was changed")
    elif outcome.reverted:
        listed = ", ".join(map(str, outcome.reverted))
        print(
            f"reverted {len(outcome.reverted)} migration(s) ({listed}); "
            f"{schema_words(outcome.schema_version)}; backup taken first: {outcome.backup.path}"
        )
        for version, what in discards.items():
            print(f"  reverting {version} discarded {'; '.join(what)}")
    else:
        print(f"nothing to revert; {schema_words(outcome.schema_version)}")
    return EXIT_OK


def _revert_plan_text(plan: RevertPlan) -> str:
    """What a revert does, step by step, with what each step discards."""
    lines = [
        f"reverting {len(plan.steps)} migration(s) from {schema_words(plan.schema_version)} to "
        f"{schema_words(plan.target or None)}, after a backup:"
    ]
    lines.extend(f"  {f.version} ({f.description}): {f.evidence}" for f in plan.steps)
    return "\n".join(lines)


def _print_revert_plan(plan: RevertPlan) -> None:
    """Before any step runs (stderr, like the progress): what each step will do and discard."""
    print(_revert_plan_text(plan), file=sys.stderr, flush=True)


def _accept(
    db_path: str, migrations: str, idempotent: frozenset[int], args: argparse.Namespace
) -> int:
    from daemon.migrate.accept import accept_migration, acceptance_warning, undo_acceptance

    if args.version is None:
        print("accept: give the VERSION of the blocked migration to accept", file=sys.stderr)
        return EXIT_BLOCKED
    if args.undo:
        undone = undo_acceptance(
            db_path,
            args.version,
            daemon_version=__version__,
            undone_by=args.by or _user_name(),
            lock_timeout=args.wait,
        )
        if args.json:
            _print_json(undone._asdict())
        else:
            print(f"undid the acceptance of migration {undone.version}: {undone.evidence}")
        return EXIT_OK
    accepted = accept_migration(
        db_path,
        migrations,
        args.version,
        idempotent=idempotent,
        daemon_version=__version__,
        accepted_by=args.by or _user_name(),
        lock_timeout=args.wait,
    )
    if args.json:
        _print_json({**accepted._asdict(), "warning": acceptance_warning(args.version)})
    else:
        print(f"warning: {acceptance_warning(args.version)}", file=sys.stderr)
        print(
            f"accepted migration {accepted.version} ({accepted.description}) as applied: "
            f"{accepted.evidence}"
        )
    return EXIT_OK


def _user_name() -> str:
    import getpass

    try:
        return f"{getpass.getuser()} at a shell"
    except (KeyError, OSError):  # no name for this uid (a bare container)
        return f"uid {os.getuid()} at a shell"


def _print_progress(progress: Progress) -> None:
    """One line on stderr as each step starts (stdout stays the result), so a long upgrade
    shows where it is."""
    if progress.action == BACKUP:
        line = f"backing up the database before {progress.total} step(s)"
    else:
        line = (
            f"step {progress.index} of {progress.total}: {progress.action} {progress.version} "
            f"({progress.description})"
        )
    print(line, file=sys.stderr, flush=True)


def _report_error(error: MigrateError, as_json: bool, words: Words) -> int:
    message = f"{error} To fix: {words(error.remedies, error.params)}."
    if as_json:
        doc = error.as_json()
        for blocker, entry in zip(getattr(error, "blockers", ()), doc["blocked"], strict=True):
            entry["remedy"] = words(blocker.remedies, blocker.params)
        _print_json({"error": error.reason, "message": message, **doc})
    print(message, file=sys.stderr)
    return EXIT_BLOCKED if error.refusal else EXIT_FAILED


def _blocker_json(blocker: Blocker, words: Words) -> dict:
    return {**blocker.as_json(), "remedy": words(blocker.remedies, blocker.params)}


def _print_json(doc: dict) -> None:
    import json  # only --json pays for it

    print(json.dumps(doc))


def _as_json(plan: Plan, words: Words, include_steps: bool) -> dict:
    doc: dict = {
        "migrations": [
            {
                "version": f.version,
                "description": f.description,
                "state": f.state,
                "action": f.action,
                "evidence": f.evidence,
            }
            | ({"basis": f.basis} if f.basis else {})
            for f in plan.findings
        ],
        "blocked": [_blocker_json(f.as_blocker(), words) for f in plan.blockers],
        "schema_version": plan.schema_version,
    }
    if include_steps:
        # A blocked plan does nothing at all: no steps, no backup.
        steps = [] if plan.blockers else plan.steps
        doc["steps"] = [{"version": f.version, "action": f.action} for f in steps]
        doc["backup"] = plan.runs_sql and not plan.blockers
    return doc


_SQLX_STATUS = {
    State.APPLIED: "installed",
    State.PENDING: "pending",
    State.MODIFIED: "installed (different checksum)",
    State.MISSING: "installed (missing from the migrations folder)",
    State.DIRTY: "installed (failed)",
}


def status_report(plan: Plan, words: Words) -> str:
    """The `migrate status` text (also what the StartOS action shows, in its host's `words`)."""
    return "\n".join(_status_lines(plan, words))


def _status_lines(plan: Plan, words: Words) -> list[str]:
    """Like `sqlx migrate info`, plus what Keysmith will do about each version and why."""
    lines = []
    for f in plan.findings:
        lines.append(f"{f.version}/{_SQLX_STATUS[f.state]} {f.description}")
        if f.action not in (Action.NONE, Action.APPLY):
            lines.append(f"    -> {f.action}: {f.evidence}")
        if f.state is State.MODIFIED and f.row and f.migration:
            lines.append(f"    applied migration had checksum {f.row.checksum.hex()}")
            lines.append(f"    local migration has checksum {f.migration.checksum.hex()}")
        if f.basis:
            lines.append(f"    compared with: {f.basis}")
        if f.remedies:
            lines.append(f"    to fix: {words(f.remedies, {'version': str(f.version)})}")
        if f.detail:
            lines.extend("    " + line for line in f.detail.splitlines())
    lines.append(f"schema version: {plan.schema_version}")
    return lines


def _plan_text(plan: Plan, words: Words) -> str:
    if plan.blockers:
        return "blocked; nothing will be changed:\n" + "\n".join(
            f"  {b.as_blocker().line()}\n    to fix: {words(b.remedies, b.as_blocker().params)}"
            for b in plan.blockers
        )
    if not plan.steps:
        return f"nothing to do; {schema_words(plan.schema_version)}"
    lines = ["back up the database first"] if plan.runs_sql else []
    for f in plan.steps:
        why = f": {f.evidence}" if f.evidence else ""
        lines.append(f"{f.action} {f.version} ({f.description}){why}")
    return "\n".join(lines)
