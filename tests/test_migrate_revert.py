"""Reversible migrations (`NNNN_name.up.sql` + `NNNN_name.down.sql`, sqlx's convention) and
`migrate revert`: up -> down -> up is dump-identical on seeded data, and every refusal changes
nothing, with every blocker named at once."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from daemon import __version__
from daemon.migrate import Blocked, DatabaseInUse, Remedy
from daemon.migrate.backup import BackupKind, list_backups
from daemon.migrate.lock import UsersLock
from daemon.migrate.revert import revert_migrations
from daemon.migrate.source import load_downs, load_source
from tests import kit, migfiles
from tests.daemon_proc import REPO, DaemonProc, base_env
from tests.seed import seed
from tests.test_api_support import issue, make_product, must

LATEST = kit.latest_version()
# The newest migration shipped as a plain `.sql` file (before reversible migrations existed):
# it and everything before it cannot be reverted.
LAST_PLAIN = max(
    int(p.name.split("_", 1)[0])
    for p in kit.MIGRATIONS.glob("*.sql")
    if not p.name.endswith((".up.sql", ".down.sql"))
)

# Reversible migrations written the way new schema changes ship from now on, on top of the real
# schema: a new table with an index and a foreign key, a new column on a seeded table, and a
# data change whose down restores exactly what it changed.
PAIRS = {
    f"{LATEST + 1:04d}_license_support_notes.up.sql": (
        "CREATE TABLE license_support_notes (\n"
        "    id INTEGER PRIMARY KEY,\n"
        "    license_id TEXT NOT NULL REFERENCES licenses(id) ON DELETE CASCADE,\n"
        "    note TEXT NOT NULL\n"
        ");\n"
        "CREATE INDEX license_support_notes_by_license ON license_support_notes (license_id);\n"
    ),
    f"{LATEST + 1:04d}_license_support_notes.down.sql": (
        "DROP INDEX license_support_notes_by_license;\nDROP TABLE license_support_notes;\n"
    ),
    f"{LATEST + 2:04d}_products_support_url.up.sql": (
        "ALTER TABLE products ADD COLUMN support_url TEXT;\n"
    ),
    f"{LATEST + 2:04d}_products_support_url.down.sql": (
        "ALTER TABLE products DROP COLUMN support_url;\n"
    ),
}


def folder_with(tmp_path: Path, extra: dict[str, str | bytes], name: str = "m") -> Path:
    """The shipped migrations plus `extra` files, in a folder of the test's own."""
    return migfiles.write(shutil.copytree(kit.MIGRATIONS, tmp_path / name), extra)


def seeded(db: Path, folder: Path, upto: int) -> None:
    kit.apply_range(db, folder, upto=upto)
    conn = kit.connect(db)
    try:
        seed(conn, min(upto, LATEST))
    finally:
        conn.close()


def snapshot(db: Path, include_ledger: bool = False) -> str:
    conn = kit.connect(db)
    try:
        kit.assert_db_clean(conn)
        return kit.dump(conn, include_ledger=include_ledger)
    finally:
        conn.close()


def revert(db: Path, folder: Path, target: int | None = None):
    return revert_migrations(db, folder, daemon_version=__version__, target=target)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", "migrate", *args],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def heal_log(db: Path) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(
            "SELECT version, action, evidence, backup_file FROM _keysmith_heal_log ORDER BY id"
        ).fetchall()
    finally:
        conn.close()


def round_trip(db: Path, folder: Path, version: int) -> None:
    """Seeded at version - 1; up, down, up: the down returns the start exactly, and the second
    up returns what the first one made."""
    seeded(db, folder, version - 1)
    start = snapshot(db)
    kit.apply_range(db, folder, upto=version)
    after_up = snapshot(db)
    assert after_up != start, f"migration {version} changed nothing"
    outcome = revert(db, folder)
    assert outcome.reverted == [version] and outcome.schema_version == version - 1
    assert snapshot(db) == start
    kit.apply_range(db, folder, upto=version)
    assert snapshot(db) == after_up


# Every pair shipped in migrations/, found as the migrator finds them: issue 13's new
# migrations (and every later one) are covered without touching this test.
SHIPPED_PAIRS = sorted(load_downs(kit.MIGRATIONS))


@pytest.mark.parametrize("version", SHIPPED_PAIRS)
def test_every_shipped_pair_round_trips_on_seeded_data(tmp_path, version):
    round_trip(tmp_path / "app.db", kit.MIGRATIONS, version)


@pytest.mark.parametrize("version", [LATEST + 1, LATEST + 2])
def test_pairs_written_here_round_trip_on_seeded_data(tmp_path, version):
    folder = folder_with(tmp_path, PAIRS)
    round_trip(tmp_path / "app.db", folder, version)


def test_revert_to_a_version_takes_every_step_and_logs_each(tmp_path):
    folder, db = folder_with(tmp_path, PAIRS), tmp_path / "app.db"
    seeded(db, folder, LATEST)
    start = snapshot(db)
    kit.apply_range(db, folder)
    outcome = revert(db, folder, target=LATEST)
    assert outcome.reverted == [LATEST + 2, LATEST + 1]
    assert outcome.schema_version == LATEST and outcome.backup is not None
    assert snapshot(db) == start
    assert set(kit.checksums(db)) == set(range(1, LATEST + 1))
    conn = sqlite3.connect(db)
    kept = {v for (v,) in conn.execute("SELECT version FROM _keysmith_provenance")}
    conn.close()
    assert kept == set(range(1, LATEST + 1)), "the reverted versions' provenance must go"
    log = heal_log(db)
    assert [(v, a) for v, a, _e, _b in log] == [(LATEST + 2, "revert"), (LATEST + 1, "revert")]
    assert all(backup == str(outcome.backup.path) for *_x, backup in log)
    assert "down.sql" in log[0][2]


def test_a_reverted_database_is_what_the_older_folder_runs_on(tmp_path):
    """After the revert the older folder finds nothing to do and nothing blocked."""
    folder, db = folder_with(tmp_path, PAIRS), tmp_path / "app.db"
    kit.apply_range(db, folder)
    revert(db, folder, target=LATEST)
    outcome = kit.apply_range(db, kit.MIGRATIONS)
    assert outcome.applied == [] and outcome.schema_version == LATEST


# ---- refusals: nothing changes, every blocker is named ------------------------------------


def refused(db: Path, folder: Path, target: int | None) -> Blocked:
    before = snapshot(db, include_ledger=True)
    before_bytes = kit.file_bytes(db)
    with pytest.raises(Blocked) as error:
        revert(db, folder, target)
    assert snapshot(db, include_ledger=True) == before
    assert kit.file_bytes(db) == before_bytes
    assert "Nothing was changed" in str(error.value)
    assert error.value.remedies == (Remedy.KEEP_CURRENT_VERSION, Remedy.RESTORE_BACKUP)
    return error.value


def test_shipped_plain_migrations_are_irreversible_and_say_so(tmp_path):
    db = tmp_path / "app.db"
    seeded(db, kit.MIGRATIONS, LATEST)
    error = refused(db, kit.MIGRATIONS, LAST_PLAIN - 2)
    # The reversible ones above LAST_PLAIN are not blockers; both plain ones are, at once.
    assert [b.version for b in error.blockers] == [LAST_PLAIN, LAST_PLAIN - 1], "every blocker"
    assert "plain migration without a down file" in str(error)
    assert "Refused to revert the database" in str(error)


def test_an_up_file_without_its_down_file_is_refused(tmp_path):
    pairs = {k: v for k, v in PAIRS.items() if not k.startswith(f"{LATEST + 2:04d}_")}
    pairs[f"{LATEST + 2:04d}_products_support_url.up.sql"] = PAIRS[
        f"{LATEST + 2:04d}_products_support_url.up.sql"
    ]
    folder, db = folder_with(tmp_path, pairs), tmp_path / "app.db"
    kit.apply_range(db, folder)
    error = refused(db, folder, LATEST)
    assert [b.version for b in error.blockers] == [LATEST + 2]
    assert "has no matching" in str(error) and "products_support_url.down.sql" in str(error)


def forget_kept_downs(db: Path) -> None:
    """The database as a release that kept no down texts left it."""
    conn = sqlite3.connect(db)
    try:
        conn.execute("DELETE FROM _keysmith_down_texts")
        conn.commit()
    finally:
        conn.close()


def test_a_modified_up_file_is_refused(tmp_path):
    folder, db = folder_with(tmp_path, PAIRS), tmp_path / "app.db"
    kit.apply_range(db, folder)
    forget_kept_downs(db)
    up = folder / f"{LATEST + 1:04d}_license_support_notes.up.sql"
    up.write_text(up.read_text() + "-- a note added after it was applied\n")
    error = refused(db, folder, LATEST)
    assert [b.version for b in error.blockers] == [LATEST + 1]
    assert "is not the text that was applied" in str(error)
    assert error.blockers[0].kind == "modified"


def test_a_modified_up_file_reverts_with_the_down_kept_when_it_was_applied(tmp_path):
    folder, db = folder_with(tmp_path, PAIRS), tmp_path / "app.db"
    kit.apply_range(db, folder, upto=LATEST)
    at_latest = snapshot(db)
    kit.apply_range(db, folder)
    up = folder / f"{LATEST + 1:04d}_license_support_notes.up.sql"
    up.write_text(up.read_text() + "-- a note added after it was applied\n")
    (folder / f"{LATEST + 1:04d}_license_support_notes.down.sql").write_text("SELECT no_such;\n")
    outcome = revert(db, folder, LATEST)
    assert outcome.reverted == [LATEST + 2, LATEST + 1]
    assert snapshot(db) == at_latest
    assert "(kept with the data)" in heal_log(db)[-1][2]


def test_a_version_missing_from_the_folder_is_refused(tmp_path):
    folder, db = folder_with(tmp_path, PAIRS), tmp_path / "app.db"
    kit.apply_range(db, folder)
    forget_kept_downs(db)
    older = folder_with(tmp_path, {}, name="older")
    error = refused(db, older, LATEST)
    assert {b.version for b in error.blockers} == {LATEST + 1, LATEST + 2}
    assert "no file for it is in the migrations folder" in str(error)
    assert {b.kind for b in error.blockers} == {"missing_from_folder"}


def test_revert_refuses_while_another_process_has_the_database_open(tmp_path):
    folder, db = folder_with(tmp_path, PAIRS), tmp_path / "app.db"
    kit.apply_range(db, folder)
    before = snapshot(db, include_ledger=True)
    serving = UsersLock(db)
    serving.take_shared(timeout=1)
    try:
        with pytest.raises(DatabaseInUse):
            revert(db, folder, LATEST)
    finally:
        serving.release()
    assert snapshot(db, include_ledger=True) == before
    assert not (db.parent / "backups").exists(), "refused before the backup"


def test_a_down_step_that_would_fail_is_refused_before_the_backup(tmp_path):
    """The newest step would revert, the next one fails on this database: every step is tried
    in a transaction that is rolled back, so the revert is refused before the backup and
    before any step, naming the failing one."""
    pairs = dict(PAIRS)
    pairs[f"{LATEST + 1:04d}_license_support_notes.down.sql"] = "DROP TABLE no_such_table;\n"
    folder, db = folder_with(tmp_path, pairs), tmp_path / "app.db"
    seeded(db, folder, LATEST)
    kit.apply_range(db, folder)
    before = snapshot(db, include_ledger=True)
    error = refused(db, folder, LATEST)
    assert snapshot(db, include_ledger=True) == before, "nothing changed"
    assert heal_log(db) == [], "no step is recorded as reverted"
    assert [(b.version, b.kind) for b in error.blockers] == [(LATEST + 1, "down_would_fail")]
    assert "no_such_table" in str(error)
    assert not list((db.parent / "backups").glob("*pre-revert*")), "refused before the backup"


def test_after_a_downgrade_the_restore_action_picks_the_pre_upgrade_backup(tmp_path):
    """Upgrade from the older schema (a pre-upgrade backup), downgrade (a backup at the newer
    schema, newer still): the older version's 'Restore pre-upgrade backup' must put back the
    one it can run on, never the one taken before the revert."""
    db = tmp_path / "data" / "keysmith.db"
    db.parent.mkdir()
    seeded(db, kit.MIGRATIONS, LAST_PLAIN)
    upgrade = kit.apply_range(db, kit.MIGRATIONS)
    assert upgrade.backup is not None and upgrade.schema_version == LATEST
    outcome = revert(db, kit.MIGRATIONS, target=LAST_PLAIN)
    assert outcome.schema_version == LAST_PLAIN
    assert outcome.backup.path.name.endswith(f"-pre-revert-v{LATEST}.sqlite3")
    assert [b.path for b in list_backups(db)] == [upgrade.backup.path]
    assert [b.path for b in list_backups(db, BackupKind.REVERT)] == [outcome.backup.path]
    env = base_env({"KEYSMITH_DB_PATH": str(db), "KEYSMITH_MIGRATIONS_DIR": str(kit.MIGRATIONS)})
    done = subprocess.run(
        [sys.executable, "-m", "daemon", "action", "restore-backup"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"]["value"] == str(upgrade.backup.path)
    assert max(kit.checksums(db)) == LAST_PLAIN, "the restored database is one it can run on"


# ---- what a revert discards, declared by its down files -----------------------------------


def test_every_shipped_down_file_declares_what_it_discards():
    undeclared = [v for v, down in load_downs(kit.MIGRATIONS).items() if not down.discards]
    assert undeclared == [], "add a '-- discards: ...' header line (or '-- discards: nothing')"


def test_only_header_lines_declare_discards(tmp_path):
    folder = folder_with(
        tmp_path,
        {
            f"{LATEST + 1:04d}_x.up.sql": "CREATE TABLE x (a);\n",
            f"{LATEST + 1:04d}_x.down.sql": (
                "-- no-transaction\n-- why it is written this way\n\n--   discards: the x rows  \n"
                "DROP TABLE x;\n-- discards: not a header line\n"
            ),
        },
    )
    assert load_downs(folder)[LATEST + 1].discards == ("the x rows",)


def test_the_revert_names_what_it_discards_before_acting_and_in_the_heal_log(tmp_path):
    db = tmp_path / "app.db"
    seeded(db, kit.MIGRATIONS, LATEST)
    done = cli("revert", "--to", str(LAST_PLAIN), "--db", str(db), "--migrations",
               str(kit.MIGRATIONS))  # fmt: skip
    assert done.returncode == 0, done.stderr
    api_keys = "scoped API keys, webhook endpoints and their events, deliveries and delivery log"
    # Before the first step runs (stderr is in order), then in the result.
    before_acting = done.stderr.split("step 1 of")[0]
    assert api_keys in before_acting and "buyer emails on licenses" in before_acting
    assert f"reverting 14 discarded {api_keys}" in done.stdout
    evidence = {v: e for v, _a, e, _b in heal_log(db)}
    assert f"which discards {api_keys}" in evidence[14]
    assert "per-license seat limits and grace periods" in evidence[13]


def test_the_json_result_lists_what_was_discarded(tmp_path):
    db = tmp_path / "app.db"
    kit.apply_range(db, kit.MIGRATIONS)
    done = cli("revert", "--to", "13", "--db", str(db), "--migrations", str(kit.MIGRATIONS),
               "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    discarded = json.loads(done.stdout)["discarded"]
    # Every step reverted reports, "nothing" included (each shipped down file declares one).
    assert set(discarded) == {
        str(int(p.name[:4])) for p in kit.MIGRATIONS.glob("*.down.sql") if int(p.name[:4]) > 13
    }
    assert discarded["14"] == [
        "scoped API keys, webhook endpoints and their events, deliveries and delivery log"
    ]


# ---- the command line ------------------------------------------------------------------------


def test_cli_revert_exit_codes_json_and_default_of_one_step(tmp_path):
    folder, db = folder_with(tmp_path, PAIRS), tmp_path / "app.db"
    kit.apply_range(db, folder)
    done = cli("revert", "--db", str(db), "--migrations", str(folder), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["reverted"] == [LATEST + 2]
    before = snapshot(db, include_ledger=True)
    blocked = cli("revert", "--to", "1", "--db", str(db), "--migrations", str(folder), "--json")
    assert blocked.returncode == 2, blocked.stderr
    doc = json.loads(blocked.stdout)
    assert doc["error"] == "blocked"
    assert [b["version"] for b in doc["blocked"]] == list(range(LAST_PLAIN, 1, -1))
    assert "Nothing was changed" in doc["message"] and "To fix:" in doc["message"]
    assert snapshot(db, include_ledger=True) == before


# ---- the acceptance test: upgrade, write, downgrade, nothing lost -------------------------


def test_licenses_written_after_an_upgrade_survive_the_downgrade(tmp_path):
    """Serve with folder B (= A + a reversible migration), write licenses, stop, revert to A's
    version, serve with folder A: every license is there and validates."""
    newer = folder_with(tmp_path, PAIRS, name="b")
    db = tmp_path / "data" / "keysmith.db"
    with DaemonProc(tmp_path, migrations_dir=newer, db_path=db) as daemon:
        assert daemon.status()["state"] == "serving", daemon.log_text()
        product = make_product(daemon)
        licenses = [issue(daemon, product) for _ in range(5)]
    assert max(kit.checksums(db)) == LATEST + 2
    done = cli("revert", "--to", str(LATEST), "--db", str(db), "--migrations", str(newer))
    assert done.returncode == 0, done.stderr
    with DaemonProc(tmp_path, migrations_dir=kit.MIGRATIONS, db_path=db) as daemon:
        assert daemon.status()["state"] == "serving", daemon.log_text()
        for lic in licenses:
            answer = must(daemon.request("POST", "/v1/validate", {"key": lic["license_key"]}), 200)
            assert answer["ok"] is True, answer


def test_folder_listing_reads_down_files_only_when_reverting(tmp_path):
    folder = folder_with(tmp_path, {f"{LATEST + 1:04d}_x.down.sql": b"\xff\xfe not utf-8"})
    assert max(m.version for m in load_source(folder)) == LATEST  # a run never reads it


def test_a_heal_log_from_before_reverts_is_widened_with_every_row_kept(tmp_path):
    """Databases healed by an earlier release have a heal log that allows only 'restamp' and
    'rerun': the first revert rebuilds it, keeping its rows and its append-only triggers."""
    folder, db = folder_with(tmp_path, PAIRS), tmp_path / "app.db"
    kit.apply_range(db, folder)
    conn = kit.connect(db)
    (narrow,) = conn.execute(
        "SELECT sql FROM sqlite_master WHERE name = '_keysmith_heal_log'"
    ).fetchone()
    conn.execute("DROP TRIGGER _keysmith_heal_log_no_update")
    conn.execute("DROP TRIGGER _keysmith_heal_log_no_delete")
    conn.execute("DROP TABLE _keysmith_heal_log")
    conn.execute(re.sub(r"action IN \([^)]*\)", "action IN ('restamp', 'rerun')", narrow))
    conn.execute(
        "INSERT INTO _keysmith_heal_log (version, action, evidence, new_checksum, "
        "daemon_version) VALUES (9, 'restamp', 'an old heal', x'00', '0.0.1')"
    )
    conn.close()
    revert(db, folder)
    assert [(v, a) for v, a, _e, _b in heal_log(db)] == [(9, "restamp"), (LATEST + 2, "revert")]
    conn = kit.connect(db)
    try:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM _keysmith_heal_log")
    finally:
        conn.close()


def test_a_failing_no_transaction_down_step_restores_the_backup(tmp_path):
    pairs = dict(PAIRS)
    pairs[f"{LATEST + 2:04d}_products_support_url.down.sql"] = (
        "-- no-transaction\nALTER TABLE products DROP COLUMN support_url;\nDROP TABLE nothing;\n"
    )
    folder, db = folder_with(tmp_path, pairs), tmp_path / "app.db"
    seeded(db, folder, LATEST)
    kit.apply_range(db, folder)
    before = snapshot(db, include_ledger=True)
    with pytest.raises(Exception) as error:
        revert(db, folder, LATEST)
    assert "The backup taken before the revert" in str(error.value)
    assert "was restored: the database is as it was before the revert" in str(error.value)
    assert snapshot(db, include_ledger=True) == before
