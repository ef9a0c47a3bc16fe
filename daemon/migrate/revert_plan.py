"""The revert policy: which applied versions a revert undoes, newest first, and whether each one
can be. Pure, like plan.py: reads its inputs, returns a RevertPlan, changes nothing.

| finding (for each applied version above the target)                  | action  |
|----------------------------------------------------------------------|---------|
| up file is the one applied, and a down file is beside it             | revert  |
| no usable down file, but its down text is kept with the data, undoes | revert  |
|   the applied checksum and comes from this folder's lineage          |         |
| a kept down text of another checksum or lineage (unknown origin)     | blocked |
| its checksum was accepted by the operator (that text never ran)      | blocked |
| a plain `.sql` migration (sqlx's irreversible kind)                  | blocked |
| an `.up.sql` without its `.down.sql` (and none kept)                 | blocked |
| up file changed since it was applied (checksum differs, none kept)   | blocked |
| applied, but no file for it in the folder (and none kept)            | blocked |
| recorded as failed                                                   | blocked |

A step's evidence names what its down file declares it discards (`-- discards:` header lines,
source.py), so the plan shows it before anything runs and the heal log keeps it. Down texts kept
with the data (carried.py) are what let a release that lacks a migration revert it.

A down file undoes what its up file did; once the up file differs from the applied one, nothing
says the down file undoes what was really applied, so the step is refused rather than guessed
(unless the down kept when it was applied is at hand). Every blocker is reported at once,
before anything changes; revert.py then tries every step on the database in a transaction it
rolls back, and refuses, still before the backup, a step that would fail.
"""

from __future__ import annotations

import os
from collections import namedtuple

from daemon.migrate.errors import BlockKind, Remedy
from daemon.migrate.ledger import AppliedRow, Ledger
from daemon.migrate.plan import Action, Finding, State
from daemon.migrate.source import Migration

TYPE_CHECKING = False
if TYPE_CHECKING:
    from daemon.migrate.carried import Stored

# What the operator can do when a revert is refused: stay on the version that migrated the
# database, or go back through the backup taken before that upgrade.
REFUSED = (Remedy.KEEP_CURRENT_VERSION, Remedy.RESTORE_BACKUP)


class RevertPlan(namedtuple("RevertPlan", "findings downs schema_version target")):
    """findings: one per applied version above `target`, newest first; downs: the down file of
    each version to revert; schema_version: before the revert; target: the version to end at
    (None: no schema at all)."""

    __slots__ = ()

    @property
    def blockers(self) -> list[Finding]:
        return [f for f in self.findings if f.action is Action.BLOCKED]

    @property
    def steps(self) -> list[Finding]:
        return [f for f in self.findings if f.action is Action.REVERT]

    @property
    def discards(self) -> dict[int, tuple[str, ...]]:
        """What each step's down file declares it discards, for the steps that declare it."""
        return {
            f.version: self.downs[f.version].discards
            for f in self.steps
            if self.downs[f.version].discards
        }

    @property
    def runs_outside_a_transaction(self) -> bool:
        return any(self.downs[f.version].no_transaction for f in self.steps)


def plan_revert(
    source: list[Migration],
    downs: dict[int, Migration],
    ledger: Ledger,
    target: int | None = None,
    stored: dict[int, Stored] | None = None,
    lineage: bytes = b"",
) -> RevertPlan:
    """Undo every applied version above `target`; with no target, only the newest applied one
    (sqlx's `migrate revert` default). `stored`: the down texts kept with the data, trusted
    only for the applied checksum and this folder's `lineage`."""
    applied = sorted(ledger.rows, reverse=True)
    if target is None:
        target = applied[1] if len(applied) > 1 else None
    by_version = {m.version: m for m in source}
    kept = stored or {}
    findings = [
        _classify(
            by_version.get(version),
            downs.get(version),
            ledger.rows[version],
            _trusted(kept.get(version), ledger.rows[version], lineage),
            accepted=version in ledger.accepted,
            kept=version in kept,
        )
        for version in applied
        if target is None or version > target
    ]
    chosen = {f.version: f.migration for f in findings if f.action is Action.REVERT}
    return RevertPlan(findings, chosen, ledger.schema_version, target)


def _trusted(stored: Stored | None, row: AppliedRow, lineage: bytes) -> Migration | None:
    """The kept down text, when it undoes the applied checksum and came from our lineage."""
    if stored is None or stored.up_checksum != row.checksum or stored.lineage != lineage:
        return None
    return stored.down


def _classify(
    migration: Migration | None,
    down: Migration | None,
    row: AppliedRow,
    kept_down: Migration | None,
    *,
    accepted: bool,
    kept: bool,
) -> Finding:
    """One applied version: reverted with its down file or its kept down text, or refused.
    The Finding's `migration` is the down text a step runs."""

    def refused(kind: BlockKind, evidence: str, state: State = State.APPLIED) -> Finding:
        return Finding(
            version=row.version,
            description=row.description,
            state=state,
            action=Action.BLOCKED,
            evidence=f"cannot be reverted: {evidence}",
            remedies=REFUSED,
            kind=kind,
            row=row,
        )

    if not row.success:
        return refused(
            BlockKind.DIRTY,
            "it is recorded as failed (success = false), so what it left behind is unknown",
            State.DIRTY,
        )
    if accepted:
        return refused(
            BlockKind.ACCEPTED,
            "its text was accepted by the operator without running it (see the heal log), so "
            "its down file undoes a text that never ran on this database; undo the acceptance "
            "first (`accept --undo`) if the earlier text is what ran",
            State.MODIFIED,
        )
    file_down = down if migration is not None and row.checksum == migration.checksum else None
    chosen = file_down or kept_down
    if chosen is not None:
        discards = f", which discards {'; '.join(chosen.discards)}" if chosen.discards else ""
        return Finding(
            version=row.version,
            description=row.description,
            state=State.APPLIED if migration is not None else State.MISSING,
            action=Action.REVERT,
            evidence=f"reverted with {os.path.basename(chosen.path)}{discards}",
            migration=chosen,
            row=row,
        )
    if kept:
        return refused(
            BlockKind.UNKNOWN_ORIGIN,
            "a down text is kept with the data, but of unknown origin: it was not kept for the "
            "applied checksum by a release of this migrations folder's lineage",
            State.APPLIED if migration is not None else State.MISSING,
        )
    if migration is None:
        return refused(
            BlockKind.MISSING,
            "it was applied, but no file for it is in the migrations folder and no down text "
            "was kept with the data, so nothing says how to undo it",
            State.MISSING,
        )
    name = os.path.basename(migration.path)
    if row.checksum != migration.checksum:
        return refused(
            BlockKind.MODIFIED,
            f"{name} is not the text that was applied (its checksum differs from the recorded "
            "one), so its down file may not undo what was applied",
            State.MODIFIED,
        )
    if not name.endswith(".up.sql"):
        return refused(
            BlockKind.IRREVERSIBLE,
            f"it was shipped as {name}, a plain migration without a down file, which sqlx "
            "treats as irreversible",
        )
    return refused(
        BlockKind.NO_DOWN, f"{name} has no matching {name.removesuffix('.up.sql')}.down.sql"
    )
