"""The heal policy: compare the migrations folder with the ledger and decide, per version, what a
run will do. Pure: reads its inputs, returns a Plan, changes nothing.

| finding                                                    | action  |
|------------------------------------------------------------|---------|
| checksum equal                                             | none    |
| not applied                                                | apply   |
| mismatch, a cosmetic variant of today's bytes matches      | restamp |
| mismatch, applied text equal up to comments/whitespace     | restamp |
| mismatch (or failed row), version on the idempotent list   | rerun   |
| any other mismatch; applied but missing; failed row        | blocked |

Cheapest and safest proof first: a re-stamp backed by evidence always wins over a re-run.
"""

from __future__ import annotations

from collections import namedtuple

from daemon.migrate.errors import PREVIOUS_VERSION_HINT, RESTORE_HINT, Blocker
from daemon.migrate.ledger import AppliedRow, Ledger
from daemon.migrate.source import Migration

CHECKSUM_BYTES = 48  # SHA-384


class Finding(
    namedtuple(
        "Finding",
        "version description state action evidence remedy migration row detail",
        defaults=("", "", None, None, ""),
    )
):
    """What the plan found for one version.

    state: applied | pending | modified | missing | dirty
    action: none | apply | restamp | rerun | blocked
    evidence: why (the proof for a heal, the finding for a refusal); remedy: what to do;
    migration / row: the source file and ledger row behind it; detail: a diff of the applied
    text against today's, when both are known.
    """

    __slots__ = ()

    def as_blocker(self) -> Blocker:
        return Blocker(self.version, self.description, self.evidence, self.remedy)


class Plan(namedtuple("Plan", "findings schema_version missing_provenance")):
    """Every version's Finding in order, the schema version before the run, and the applied
    migrations whose text we have not kept yet (recorded on the next write)."""

    __slots__ = ()

    @property
    def blockers(self) -> list[Finding]:
        return [f for f in self.findings if f.action == "blocked"]

    @property
    def steps(self) -> list[Finding]:
        return [f for f in self.findings if f.action in ("apply", "restamp", "rerun")]

    @property
    def runs_sql(self) -> bool:
        return any(f.action in ("apply", "rerun") for f in self.findings)

    @property
    def changes_anything(self) -> bool:
        return bool(self.steps or self.missing_provenance)


def make_plan(
    source: list[Migration], ledger: Ledger, idempotent: frozenset[int], target: int | None = None
) -> Plan:
    by_version = {m.version: m for m in source}
    findings = []
    for version in sorted(by_version.keys() | ledger.rows.keys()):
        finding = classify(by_version.get(version), ledger, version, idempotent)
        if finding.action == "apply" and target is not None and version > target:
            continue
        findings.append(finding)
    unrecorded = [
        m
        for m in source
        if m.version in ledger.rows
        and m.version not in ledger.provenance
        and ledger.rows[m.version].checksum == m.checksum
    ]
    return Plan(findings, ledger.schema_version, unrecorded)


def classify(
    migration: Migration | None, ledger: Ledger, version: int, idempotent: frozenset[int]
) -> Finding:
    row = ledger.rows.get(version)
    if migration is None:
        assert row is not None
        return _missing(row)
    if row is None:
        return Finding(version, migration.description, "pending", "apply", migration=migration)
    if not row.success:
        return _dirty(migration, row, idempotent)
    if row.checksum == migration.checksum:
        return Finding(version, migration.description, "applied", "none", migration=migration)
    return _modified(migration, row, ledger, idempotent)


def _missing(row: AppliedRow) -> Finding:
    return Finding(
        row.version,
        row.description,
        "missing",
        "blocked",
        evidence=f"was applied on {row.installed_on} but no file for it is in the migrations "
        "folder: the database was migrated by a newer Keysmith",
        remedy=f"install that newer Keysmith again, or {RESTORE_HINT} to return to this version",
        row=row,
    )


def _dirty(migration: Migration, row: AppliedRow, idempotent: frozenset[int]) -> Finding:
    what = "is recorded as failed (success = false)"
    if migration.version in idempotent:
        return Finding(
            migration.version,
            migration.description,
            "dirty",
            "rerun",
            evidence=f"{what}; certified idempotent, so it is run again",
            migration=migration,
            row=row,
        )
    return Finding(
        migration.version,
        migration.description,
        "dirty",
        "blocked",
        evidence=f"{what}, which only a hand edit or another tool writes on SQLite, and it is "
        "not certified safe to run twice",
        remedy=RESTORE_HINT,
        migration=migration,
        row=row,
    )


def _modified(
    migration: Migration, row: AppliedRow, ledger: Ledger, idempotent: frozenset[int]
) -> Finding:
    def found(action: str, evidence: str, remedy: str = "", detail: str = "") -> Finding:
        return Finding(
            migration.version,
            migration.description,
            "modified",
            action,
            evidence,
            remedy,
            migration,
            row,
            detail,
        )

    # The proofs load only when a checksum differs: a no-op run never pays for them.
    from daemon.migrate.drift import prove_comments_only, prove_cosmetic

    if len(row.checksum) == CHECKSUM_BYTES:
        evidence = prove_cosmetic(migration.sql_bytes, row.checksum)
        if evidence:
            return found("restamp", evidence)
    provenance = ledger.provenance.get(migration.version)
    if provenance is not None and provenance.applied_sql is not None:
        evidence = prove_comments_only(
            migration.text, provenance.applied_sql, provenance.normalized_sha384, row.checksum
        )
        if evidence:
            return found("restamp", evidence)
    damaged = len(row.checksum) != CHECKSUM_BYTES
    what = (
        f"the recorded checksum is {len(row.checksum)} bytes, not the 48 of a SHA-384 "
        "(the ledger row was damaged or written by another tool)"
        if damaged
        else "was previously applied but has been modified, and the change is not cosmetic"
    )
    if migration.version in idempotent:
        return found("rerun", f"{what}; certified idempotent, so it is run again")
    applied = provenance.applied_sql if provenance else None
    detail = _diff(applied, migration.sql_bytes) if applied is not None else ""
    return found(
        "blocked",
        what,
        remedy=f"{PREVIOUS_VERSION_HINT} (this release changed an applied migration)"
        if not damaged
        else RESTORE_HINT,
        detail=detail,
    )


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
