"""The heal policy: compare the migrations folder with the ledger and decide, per version, what a
run will do. Pure: reads its inputs, returns a Plan, changes nothing.

| finding                                                       | action  |
|---------------------------------------------------------------|---------|
| checksum equal                                                | none    |
| not applied                                                   | apply   |
| mismatch, a cosmetic variant of today's bytes matches         | restamp |
| mismatch, applied text equal up to comments/whitespace        | restamp |
| mismatch, no applied text kept, it is a released text whose   | restamp |
|   tokens equal today's (history.lock)                         |         |
| mismatch (or failed row), version on the idempotent list      | rerun   |
| any other mismatch; applied but missing; failed row           | blocked |

Cheapest and safest proof first: a re-stamp backed by evidence always wins over a re-run.
"Released text" means one listed in the folder's history.lock (history.py): with no provenance
kept, it is the only way to know what an applied checksum stood for.

Reverting (revert_plan.py) has its own pure plan; it reuses Finding with the REVERT action.
"""

from __future__ import annotations

from collections import namedtuple
from enum import StrEnum

from daemon.migrate.errors import Blocker, BlockKind, Remedy
from daemon.migrate.ledger import AppliedRow, Ledger
from daemon.migrate.source import Migration, has_down_file

TYPE_CHECKING = False
if TYPE_CHECKING:
    from daemon.migrate.history import History, Released

CHECKSUM_BYTES = 48  # SHA-384


class State(StrEnum):
    """What the ledger and the folder say about one version (sqlx's `migrate info` column)."""

    APPLIED = "applied"
    PENDING = "pending"
    MODIFIED = "modified"
    MISSING = "missing"
    DIRTY = "dirty"


class Action(StrEnum):
    """What a run does about one version."""

    NONE = "none"
    APPLY = "apply"
    RESTAMP = "restamp"
    RERUN = "rerun"
    BLOCKED = "blocked"
    REVERT = "revert"


class Basis(StrEnum):
    """What a changed version's text was compared with: the provenance kept when it was applied
    (trusted only while its checksum is the ledger's), or the release-history lock."""

    PROVENANCE = "provenance"
    HISTORY = "history lock"
    NONE = "none"  # neither knows the applied text


_KIND_OF_STATE = {
    State.MISSING: BlockKind.MISSING,
    State.MODIFIED: BlockKind.MODIFIED,
    State.DIRTY: BlockKind.DIRTY,
    State.APPLIED: BlockKind.NO_DOWN,
}

# The progress report's action before the backup, which is not a step of its own.
BACKUP = "backup"
STEP_ACTIONS = (Action.APPLY, Action.RESTAMP, Action.RERUN)
SQL_ACTIONS = (Action.APPLY, Action.RERUN)


class Finding:
    """What the plan found for one version; built with keywords only, so a new field can never
    shift another one silently.

    evidence: why (the proof for a heal, the finding for a refusal); remedies: what the
    operator can do about a refusal; migration / row: the source file and ledger row behind it;
    detail: a diff of the applied text against today's, when both are known.
    """

    # A plain slotted class rather than a dataclass: importing dataclasses would cost the
    # no-op run more than building every Finding (see runner.py).
    __slots__ = (
        "action",
        "basis",
        "description",
        "detail",
        "evidence",
        "kind",
        "migration",
        "remedies",
        "row",
        "state",
        "version",
    )  # fmt: skip

    def __init__(
        self,
        *,
        version: int,
        description: str,
        state: State,
        action: Action,
        evidence: str = "",
        remedies: tuple[Remedy, ...] = (),
        migration: Migration | None = None,
        row: AppliedRow | None = None,
        detail: str = "",
        kind: BlockKind | None = None,
        basis: Basis | None = None,
    ) -> None:
        self.version = version
        self.kind = kind
        self.basis = basis
        self.description = description
        self.state = state
        self.action = action
        self.evidence = evidence
        self.remedies = remedies
        self.migration = migration
        self.row = row
        self.detail = detail

    def __repr__(self) -> str:
        return f"Finding(version={self.version}, state={self.state}, action={self.action})"

    def as_blocker(self) -> Blocker:
        kind = self.kind or _KIND_OF_STATE[self.state]
        return Blocker(self.version, self.description, self.evidence, self.remedies, kind)


class Plan(namedtuple("Plan", "findings schema_version missing_provenance missing_downs")):
    """Every version's Finding in order, the schema version before the run, the applied
    migrations whose text we have not kept yet, and those whose down text is not kept with the
    data yet (both recorded on the next write)."""

    __slots__ = ()

    @property
    def blockers(self) -> list[Finding]:
        return [f for f in self.findings if f.action is Action.BLOCKED]

    @property
    def steps(self) -> list[Finding]:
        return [f for f in self.findings if f.action in STEP_ACTIONS]

    @property
    def runs_sql(self) -> bool:
        return any(f.action in SQL_ACTIONS for f in self.findings)

    @property
    def runs_outside_a_transaction(self) -> bool:
        """Whether a step cannot be rolled back, so its failure needs the backup restored."""
        return any(
            f.action in SQL_ACTIONS and f.migration is not None and f.migration.no_transaction
            for f in self.findings
        )

    @property
    def changes_anything(self) -> bool:
        return bool(self.steps or self.missing_provenance or self.missing_downs)


def make_plan(
    source: list[Migration],
    ledger: Ledger,
    idempotent: frozenset[int],
    target: int | None = None,
    history: History | None = None,
) -> Plan:
    """`history`: the released texts, needed only when a checksum differs (see
    `needs_history`); None when the folder has no lock."""
    by_version = {m.version: m for m in source}
    findings = []
    for version in sorted(by_version.keys() | ledger.rows.keys()):
        finding = classify(by_version.get(version), ledger, version, idempotent, history)
        if finding.action is Action.APPLY and target is not None and version > target:
            continue
        findings.append(finding)
    # Only versions applied from today's very file can have their texts kept: one pass (a
    # no-op run on a thousand migrations pays for every lookup here).
    unrecorded, uncarried = [], []
    rows, provenance, carried, accepted = ledger
    for m in source:
        row = rows.get(m.version)
        if row is None or row.checksum != m.checksum:
            continue
        if m.version not in provenance:
            unrecorded.append(m)
        if carried.get(m.version) != m.checksum and m.version not in accepted and has_down_file(m):
            uncarried.append(m)
    return Plan(findings, ledger.schema_version, unrecorded, uncarried)


def needs_history(source: list[Migration], ledger: Ledger) -> bool:
    """Whether some applied checksum differs from its file: only then can the history help,
    so a run that matches everywhere never reads it."""
    return any(
        m.version in ledger.rows and ledger.rows[m.version].checksum != m.checksum for m in source
    )


def classify(
    migration: Migration | None,
    ledger: Ledger,
    version: int,
    idempotent: frozenset[int],
    history: History | None = None,
) -> Finding:
    row = ledger.rows.get(version)
    if migration is None:
        assert row is not None
        return _missing(row)
    if row is None:
        return Finding(
            version=version,
            description=migration.description,
            state=State.PENDING,
            action=Action.APPLY,
            migration=migration,
        )
    if not row.success:
        return _dirty(migration, row, idempotent)
    if row.checksum == migration.checksum:
        return Finding(
            version=version,
            description=migration.description,
            state=State.APPLIED,
            action=Action.NONE,
            migration=migration,
        )
    return _modified(migration, row, ledger, idempotent, history)


def _missing(row: AppliedRow) -> Finding:
    return Finding(
        version=row.version,
        description=row.description,
        state=State.MISSING,
        action=Action.BLOCKED,
        evidence=f"was applied on {row.installed_on} but no file for it is in the migrations "
        "folder: the database was migrated by a newer release",
        remedies=(Remedy.INSTALL_NEWER_VERSION, Remedy.RESTORE_BACKUP),
        row=row,
    )


def _dirty(migration: Migration, row: AppliedRow, idempotent: frozenset[int]) -> Finding:
    what = "is recorded as failed (success = false)"
    if migration.version in idempotent:
        return Finding(
            version=migration.version,
            description=migration.description,
            state=State.DIRTY,
            action=Action.RERUN,
            evidence=f"{what}; certified idempotent, so it is run again",
            migration=migration,
            row=row,
        )
    return Finding(
        version=migration.version,
        description=migration.description,
        state=State.DIRTY,
        action=Action.BLOCKED,
        evidence=f"{what}, which only a hand edit or another tool writes on SQLite, and it is "
        "not certified safe to run twice",
        remedies=(Remedy.RESTORE_BACKUP,),
        migration=migration,
        row=row,
    )


def _modified(
    migration: Migration,
    row: AppliedRow,
    ledger: Ledger,
    idempotent: frozenset[int],
    history: History | None,
) -> Finding:
    provenance = ledger.provenance.get(migration.version)
    basis = (
        Basis.PROVENANCE
        if provenance is not None
        else Basis.HISTORY
        if history is not None and history.find(migration.version, row.checksum) is not None
        else Basis.NONE
    )

    def found(
        action: Action, evidence: str, remedies: tuple[Remedy, ...] = (), detail: str = ""
    ) -> Finding:
        return Finding(
            basis=basis,
            kind=BlockKind.DAMAGED_ROW if len(row.checksum) != CHECKSUM_BYTES else None,
            version=migration.version,
            description=migration.description,
            state=State.MODIFIED,
            action=action,
            evidence=evidence,
            remedies=remedies,
            migration=migration,
            row=row,
            detail=detail,
        )

    # The proofs load only when a checksum differs: a no-op run never pays for them.
    from daemon.migrate.drift import (
        prove_comments_only,
        prove_cosmetic,
        prove_released_comments_only,
    )

    if len(row.checksum) == CHECKSUM_BYTES:
        evidence = prove_cosmetic(migration.sql_bytes, row.checksum)
        if evidence:
            return found(Action.RESTAMP, evidence)
    if provenance is not None and provenance.applied_sql is not None:
        evidence = prove_comments_only(migration.text, provenance.applied_sql, row.checksum)
        if evidence:
            return found(Action.RESTAMP, evidence)
    released = None
    if provenance is None and history is not None:
        released = history.find(migration.version, row.checksum)
        if released is not None:
            evidence = prove_released_comments_only(migration.text, released)
            if evidence:
                return found(Action.RESTAMP, evidence)
    damaged = len(row.checksum) != CHECKSUM_BYTES
    what = _unproven(row, released, unknown=provenance is None and history is not None)
    if migration.version in idempotent:
        return found(Action.RERUN, f"{what}; certified idempotent, so it is run again")
    applied = provenance.applied_sql if provenance else None
    if applied is None and released is not None and released.text is not None:
        applied = released.text.encode("utf-8")
    detail = _diff(applied, migration.sql_bytes) if applied is not None else ""
    # A changed file means this release is wrong; a damaged row means the database is. A
    # deliberate change can be accepted by the operator, as the last resort.
    remedies = (
        (Remedy.RESTORE_BACKUP,)
        if damaged
        else (Remedy.INSTALL_PREVIOUS_VERSION, Remedy.ACCEPT_CHANGE)
    )
    return found(Action.BLOCKED, what, remedies, detail=detail)


def _unproven(row: AppliedRow, released: Released | None, *, unknown: bool) -> str:
    """What is known of a change no proof explains: a damaged row, the release the applied
    text came from, bytes no release had (`unknown`: the history was searched), or only that
    it differs."""
    if len(row.checksum) != CHECKSUM_BYTES:
        return (
            f"the recorded checksum is {len(row.checksum)} bytes, not the 48 of a SHA-384 "
            "(the ledger row was damaged or written by another tool)"
        )
    if released is not None:
        from daemon.migrate.history import release_name

        return (
            f"was previously applied as {release_name(released)}, whose meaning differs "
            "from today's file (not only comments or whitespace)"
        )
    if unknown:
        return (
            "was previously applied from unknown bytes: the recorded checksum matches no text "
            "this migration ever had in a release, so it was edited by hand or by another tool"
        )
    return "was previously applied but has been modified, and the change is not cosmetic"


def _diff(applied: bytes, today: bytes) -> str:
    import difflib  # only a refusal pays for it

    lines = difflib.unified_diff(
        applied.decode("utf-8", "replace").splitlines(),
        today.decode("utf-8", "replace").splitlines(),
        "applied",
        "today",
        lineterm="",
        n=1,
    )
    return "\n".join(list(lines)[:40])
