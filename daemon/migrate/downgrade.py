"""A release booting on a database a newer release migrated: revert the newer versions with the
down texts kept with the data (carried.py), then run as usual.

Only when every blocker is such a version (missing from the folder, above its newest file) and
each one's kept down text is trusted; the revert itself is revert.py's (plan, trial, backup
first, one WARN and one heal-log entry per step, all or nothing). Anything else is the run's
refusal, changing nothing, and each blocker says why this release could not revert it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from daemon.migrate.apply import HealEvent, Progress
from daemon.migrate.errors import Blocked, Blocker
from daemon.migrate.plan import Action, Plan, State
from daemon.migrate.revert import revert_migrations
from daemon.migrate.runner import Outcome, run_migrations
from daemon.migrate.source import Migration


def revert_then_run(
    db_path: str | os.PathLike[str],
    migrations_dir: str | os.PathLike[str],
    plan: Plan,
    source: list[Migration],
    *,
    idempotent: frozenset[int],
    daemon_version: str,
    on_progress: Callable[[Progress], None] | None,
    lock_timeout: float,
    started: float,
) -> Outcome:
    newest = max((m.version for m in source), default=0)
    applied = [f.version for f in plan.findings if f.state is not State.PENDING]
    target = max((v for v in applied if v <= newest), default=0)
    try:
        reverted = revert_migrations(
            db_path,
            migrations_dir,
            daemon_version=daemon_version,
            target=target,
            on_progress=on_progress,
            lock_timeout=lock_timeout,
        )
    except Blocked as refused:
        raise Blocked(_explained(plan, refused)) from None
    outcome = run_migrations(
        db_path,
        migrations_dir,
        idempotent=idempotent,
        daemon_version=daemon_version,
        on_progress=on_progress,
        lock_timeout=lock_timeout,
    )
    steps = [f for f in reverted.plan.steps if f.version in reverted.reverted]
    outcome.heals = [
        HealEvent(
            f.version,
            f.description,
            Action.REVERT,
            f.evidence,
            f.row.checksum.hex(),
            reverted.plan.downs[f.version].checksum.hex(),
            str(reverted.backup.path),
        )
        for f in steps
    ] + outcome.heals
    outcome.backup = outcome.backup or reverted.backup
    outcome.seconds = time.perf_counter() - started
    return outcome


def _explained(plan: Plan, refused: Blocked) -> list[Blocker]:
    """The run's blockers, each with why this release could not revert it itself."""
    why = {b.version: b for b in refused.blockers}
    explained = []
    for finding in plan.blockers:
        blocker = finding.as_blocker()
        cause = why.get(finding.version)
        if cause is None:  # revertible itself, but another version is not: all or nothing
            explained.append(blocker)
            continue
        reason = cause.finding.removeprefix("cannot be reverted: ")
        explained.append(
            blocker._replace(
                finding=f"{blocker.finding}; this release cannot revert it itself: {reason}",
                kind=cause.kind,
            )
        )
    return explained
