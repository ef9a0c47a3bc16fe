"""The revert policy: which applied versions a revert undoes, newest first, and whether each one
can be. Pure, like plan.py: reads its inputs, returns a RevertPlan, changes nothing.

| finding (for each applied version above the target)         | action  |
|-------------------------------------------------------------|---------|
| up file is the one applied, and a down file is beside it    | revert  |
| a plain `.sql` migration (sqlx's irreversible kind)         | blocked |
| an `.up.sql` without its `.down.sql`                        | blocked |
| up file changed since it was applied (checksum differs)     | blocked |
| applied, but no file for it in the folder                   | blocked |
| recorded as failed                                          | blocked |

A step's evidence names what its down file declares it discards (`-- discards:` header lines,
source.py), so the plan shows it before anything runs and the heal log keeps it.

A down file undoes what its up file did; once the up file differs from the applied one, nothing
says the down file undoes what was really applied, so the step is refused rather than guessed.
Every blocker is reported at once, before anything changes.
"""

from __future__ import annotations

import os
from collections import namedtuple

from daemon.migrate.errors import Remedy
from daemon.migrate.ledger import AppliedRow, Ledger
from daemon.migrate.plan import Action, Finding, State
from daemon.migrate.source import Migration

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
) -> RevertPlan:
    """Undo every applied version above `target`; with no target, only the newest applied one
    (sqlx's `migrate revert` default)."""
    applied = sorted(ledger.rows, reverse=True)
    if target is None:
        target = applied[1] if len(applied) > 1 else None
    by_version = {m.version: m for m in source}
    findings = [
        _classify(by_version.get(version), downs.get(version), ledger.rows[version])
        for version in applied
        if target is None or version > target
    ]
    steps = {f.version for f in findings if f.action is Action.REVERT}
    return RevertPlan(
        findings, {v: d for v, d in downs.items() if v in steps}, ledger.schema_version, target
    )


def _classify(migration: Migration | None, down: Migration | None, row: AppliedRow) -> Finding:
    def found(state: State, action: Action, evidence: str) -> Finding:
        return Finding(
            version=row.version,
            description=row.description,
            state=state,
            action=action,
            evidence=evidence,
            remedies=REFUSED if action is Action.BLOCKED else (),
            migration=migration,
            row=row,
        )

    if migration is None:
        return found(
            State.MISSING,
            Action.BLOCKED,
            "cannot be reverted: it was applied, but no file for it is in the migrations "
            "folder, so nothing says how to undo it",
        )
    name = os.path.basename(migration.path)
    if not row.success:
        return found(
            State.DIRTY,
            Action.BLOCKED,
            "cannot be reverted: it is recorded as failed (success = false), so what it left "
            "behind is unknown",
        )
    if row.checksum != migration.checksum:
        return found(
            State.MODIFIED,
            Action.BLOCKED,
            f"cannot be reverted safely: {name} is not the text that was applied (its checksum "
            "differs from the recorded one), so its down file may not undo what was applied",
        )
    if down is None:
        irreversible = not name.endswith(".up.sql")
        why = (
            f"it was shipped as {name}, a plain migration without a down file, which sqlx "
            "treats as irreversible"
            if irreversible
            else f"{name} has no matching {name.removesuffix('.up.sql')}.down.sql"
        )
        return found(State.APPLIED, Action.BLOCKED, f"cannot be reverted: {why}")
    discards = f", which discards {'; '.join(down.discards)}" if down.discards else ""
    return found(
        State.APPLIED, Action.REVERT, f"reverted with {os.path.basename(down.path)}{discards}"
    )
