"""The operator's override for a deliberate change: accept today's text of one migration as
applied, for a migration the plan refuses because its text changed since it was applied.

It runs no SQL. Under the migration lock, and only if the plan (re-read under the lock) still
blocks that version as modified, one transaction re-stamps its ledger checksum, keeps today's
text as its provenance, and appends an `accept` heal-log entry naming who accepted it and when.
Any other state is refused before anything changes.

`undo_acceptance` puts back what the newest acceptance of a version replaced (its ledger checksum
and its provenance, kept in `_keysmith_accept_undo`), while the ledger still holds the checksum
it accepted, and logs an `unaccept` entry.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections import namedtuple
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from daemon.migrate import ledger
from daemon.migrate.apply import open_for_migration, transaction
from daemon.migrate.errors import NotAcceptable
from daemon.migrate.lock import migration_lock
from daemon.migrate.plan import CHECKSUM_BYTES, Action, Finding, State, make_plan
from daemon.migrate.reading import checksums, read_only_ledger, sqlite_errors, storage_errors
from daemon.migrate.runner import history_if_needed
from daemon.migrate.source import Migration, load_source


def acceptance_warning(version: int | str) -> str:
    """What accepting means, shown before the operator confirms it."""
    return (
        f"Accepting records today's text of migration {version} as applied WITHOUT running it: "
        "the database keeps the schema and data the earlier text produced, and whatever the "
        "new text would change is NOT made. Do this only when you know the database already "
        "has what the new text describes (for example, you applied the change by hand)."
    )


# version, description, the checksums before and after (hex), and the heal-log evidence.
Accepted = namedtuple("Accepted", "version description old_checksum new_checksum evidence")


def accept_migration(
    db_path: str | os.PathLike[str],
    migrations_dir: str | os.PathLike[str],
    version: int,
    *,
    idempotent: frozenset[int],
    daemon_version: str,
    accepted_by: str,
    lock_timeout: float = 30.0,
) -> Accepted:
    """Accept today's text of `version`; raises NotAcceptable unless it is blocked as
    modified (then nothing was changed)."""
    source = load_source(migrations_dir)
    if not Path(db_path).exists():
        raise NotAcceptable(version, f"the database {db_path} does not exist yet")
    current = read_only_ledger(db_path, source)
    _blocked_as_modified(source, current, idempotent, version, migrations_dir)
    with _locked(db_path, lock_timeout) as conn:
        current = ledger.read_ledger(conn, checksums(source))
        step = _blocked_as_modified(source, current, idempotent, version, migrations_dir)
        return _accept(conn, step, accepted_by, daemon_version)


@contextmanager
def _locked(db_path: str | os.PathLike[str], lock_timeout: float) -> Iterator[sqlite3.Connection]:
    """A connection under the migration lock, its errors named for the operator."""
    with (
        storage_errors(Path(db_path)),
        migration_lock(Path(db_path), lock_timeout),
        sqlite_errors(db_path),
    ):
        conn = open_for_migration(Path(db_path))
        try:
            yield conn
        finally:
            conn.close()


def _blocked_as_modified(
    source: list[Migration],
    current: ledger.Ledger,
    idempotent: frozenset[int],
    version: int,
    migrations_dir: str | os.PathLike[str],
) -> Finding:
    history = history_if_needed(migrations_dir, source, current)
    plan = make_plan(source, current, idempotent, history=history)
    finding = next((f for f in plan.findings if f.version == version), None)
    if finding is None:
        raise NotAcceptable(version, "no migration has that version, in the folder or the ledger")
    if finding.state is not State.MODIFIED or finding.action is not Action.BLOCKED:
        state = {
            State.APPLIED: "it is applied and matches its file",
            State.PENDING: "it is not applied yet (it runs at the next upgrade)",
            State.MISSING: "it is applied but has no file in the migrations folder",
            State.DIRTY: "it is recorded as failed, which accepting a text cannot mend",
            State.MODIFIED: f"its change is healed without help ({finding.action})",
        }[finding.state]
        raise NotAcceptable(version, f"it is not blocked as modified: {state}")
    if finding.row is None or len(finding.row.checksum) != CHECKSUM_BYTES:
        raise NotAcceptable(version, "its ledger row is damaged, not its file changed")
    return finding


def _accept(
    conn: sqlite3.Connection, step: Finding, accepted_by: str, daemon_version: str
) -> Accepted:
    migration, row = step.migration, step.row
    assert migration is not None and row is not None
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    evidence = (
        f"accepted by the operator ({accepted_by}) at {when}: today's text was recorded as "
        "applied without running it; the database keeps the schema the earlier text produced "
        f"(refused before because it {step.evidence})"
    )
    with transaction(conn):
        ledger.ensure_tables(conn)
        replaced = conn.execute(
            "SELECT normalized_sha384, applied_sql FROM _keysmith_provenance WHERE version = ?",
            (step.version,),
        ).fetchone() or (None, None)
        ledger.restamp(conn, step.version, row.checksum, migration.checksum)
        ledger.record_provenance(conn, step.version, migration.sql_bytes, migration.checksum)
        heal_id = ledger.append_heal(
            conn,
            ledger.HealRecord(
                step.version,
                "accept",
                evidence,
                row.checksum,
                migration.checksum,
                None,
                daemon_version,
            ),
        )
        conn.execute(
            "INSERT INTO _keysmith_accept_undo (heal_id, version, old_checksum, "
            "old_normalized_sha384, old_applied_sql) VALUES (?, ?, ?, ?, ?)",
            (heal_id, step.version, row.checksum, *replaced),
        )
    return Accepted(
        step.version, step.description, row.checksum.hex(), migration.checksum.hex(), evidence
    )


def undo_acceptance(
    db_path: str | os.PathLike[str],
    version: int,
    *,
    daemon_version: str,
    undone_by: str,
    lock_timeout: float = 30.0,
) -> Accepted:
    """Put back the checksum and provenance the newest acceptance of `version` replaced; raises
    NotAcceptable (nothing changed) when there is none to undo or the ledger moved since."""
    if not Path(db_path).exists():
        raise NotAcceptable(version, f"the database {db_path} does not exist")
    with _locked(db_path, lock_timeout) as conn:
        return _undo(conn, version, undone_by, daemon_version)


def _undo(conn: sqlite3.Connection, version: int, undone_by: str, daemon_version: str) -> Accepted:
    current = ledger.read_ledger(conn)
    if version not in current.accepted:
        raise NotAcceptable(
            version,
            "there is no acceptance of it to undo (none recorded, already undone, or its ledger "
            "checksum changed since)",
        )
    row = current.rows[version]
    heal_id, old = conn.execute(
        "SELECT id, old_checksum FROM _keysmith_heal_log WHERE version = ? AND action = 'accept' "
        "ORDER BY id DESC LIMIT 1",
        (version,),
    ).fetchone()
    kept = conn.execute(
        "SELECT old_normalized_sha384, old_applied_sql FROM _keysmith_accept_undo "
        "WHERE heal_id = ?",
        (heal_id,),
    ).fetchone()
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    evidence = (
        f"the acceptance (heal-log entry {heal_id}) was undone by the operator ({undone_by}) at "
        f"{when}: the ledger checksum it replaced is back"
        + (" with the provenance it replaced" if kept and kept[1] is not None else "")
    )
    with transaction(conn):
        ledger.ensure_tables(conn)
        ledger.restamp(conn, version, row.checksum, bytes(old))
        conn.execute("DELETE FROM _keysmith_provenance WHERE version = ?", (version,))
        if kept and kept[1] is not None:
            ledger.record_provenance(conn, version, bytes(kept[1]), bytes(old))
        ledger.append_heal(
            conn,
            ledger.HealRecord(
                version, "unaccept", evidence, row.checksum, bytes(old), None, daemon_version
            ),
        )
    return Accepted(version, row.description, row.checksum.hex(), bytes(old).hex(), evidence)
