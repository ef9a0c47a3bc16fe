"""A release booting on a database a newer release migrated: revert the newer versions with the
down texts kept with the data (carried.py), then run as usual.

Only when every blocker is such a version (missing from the folder, above its newest file) and
each one's kept down text is trusted; the revert itself is revert.py's (plan, trial, backup
first, one WARN and one heal-log entry per step, all or nothing). Anything else is the run's
refusal, changing nothing, and each blocker says why this release could not revert it.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from daemon.migrate.apply import HealEvent, Progress
from daemon.migrate.errors import Blocked, Blocker
from daemon.migrate.plan import Action, Plan, State
from daemon.migrate.revert import RevertOutcome, revert_migrations
from daemon.migrate.source import Migration

TYPE_CHECKING = False
if TYPE_CHECKING:
    from daemon.migrate.runner import Outcome


def revert_newer_versions(
    db_path: str | os.PathLike[str],
    migrations_dir: str | os.PathLike[str],
    plan: Plan,
    source: list[Migration],
    *,
    daemon_version: str,
    on_progress: Callable[[Progress], None] | None,
    lock_timeout: float,
) -> RevertOutcome:
    """Revert every applied version above this release's newest file (the runner then runs as
    usual); a refusal says, per blocker, why this release could not revert it."""
    newest = max((m.version for m in source), default=0)
    applied = [f.version for f in plan.findings if f.state is not State.PENDING]
    target = max((v for v in applied if v <= newest), default=0)
    try:
        return revert_migrations(
            db_path,
            migrations_dir,
            daemon_version=daemon_version,
            target=target,
            on_progress=on_progress,
            lock_timeout=lock_timeout,
        )
    except Blocked as refused:
        raise Blocked(_explained(plan, refused)) from None


def record_reverts(outcome: Outcome, reverted: RevertOutcome) -> None:
    """The run's outcome tells the reverts first, as heals, and the backup they took."""
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
