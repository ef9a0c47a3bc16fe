"""Four daemons and two `migrate run` CLIs started at once on one database file.

Only one process may migrate at a time (the migration lock); the others must wait, find
nothing left to do, and go on to serve. The proof that each migration ran exactly once is
not only the ledger (its primary key would hide a second run) but the union of what every
process says it applied: each daemon's /healthz `applied` list and each CLI's `--json`
summary must together name every version once and only once.

The daemons share the data folder and so the status file; each one is therefore observed
through its own port (/healthz), never through the status file.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from contextlib import ExitStack, closing
from pathlib import Path
from typing import Any

from daemon.migrate.lock import migration_lock
from tests import kit
from tests.daemon_proc import DEFAULT_ADMIN_KEY, REPO, DaemonProc, base_env
from tests.seed import seed

DAEMONS = 4
CLIS = 2
SETTLE_SECONDS = 120.0
BARRIER_SECONDS = 1.0
# Tables a daemon writes while booting (the admin key from the environment, and its audit row).
BOOT_WRITES = ("settings", "audit_log")
SEED_SCALE = 20  # about 5,700 rows: enough that the winner holds the lock a while
SEED_NOW = 1_700_000_000  # any fixed instant: the seeded copy and its reference must be equal


def _all_versions() -> list[int]:
    found = (re.match(r"^(\d+)_.*\.sql$", p.name) for p in kit.MIGRATIONS.iterdir())
    return sorted({int(m.group(1)) for m in found if m})  # an up and a down file: one version


def _healthz(port: int) -> dict[str, Any] | None:
    """The daemon's /healthz body, or None while its port is not open yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as e:  # 503 in safe mode still carries the JSON body
        return json.loads(e.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def _settle(daemon: DaemonProc) -> dict[str, Any]:
    """Wait until this daemon's own /healthz shows a settled state; return that body."""
    deadline = time.monotonic() + SETTLE_SECONDS
    body = None
    while time.monotonic() < deadline:
        body = _healthz(daemon.port)
        if body is not None and body.get("state") in ("serving", "blocked", "failed"):
            assert body["pid"] == daemon.proc.pid, (body, daemon.log_text())
            return body
        assert daemon.alive(), f"daemon exited with {daemon.proc.returncode}:\n{daemon.log_text()}"
        time.sleep(0.1)
    raise AssertionError(
        f"daemon did not settle in {SETTLE_SECONDS} s: {body}\n{daemon.log_text()}"
    )


def _start_cli(db: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "daemon", "migrate", "run", "--db", str(db), "--json"],
        cwd=REPO,
        env=base_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def _race(tmp_path: Path, db: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list]:
    """Start every process at once; return the daemons' /healthz bodies, the CLIs' summaries,
    and each serving daemon's GET /v1/pubkey answer (taken while all of them still run).

    A CLI starts faster than a daemon (fewer imports), so a plain start would let a CLI win
    every time. The test holds the migration lock (the migrator's own) while all six start,
    and lets go once every daemon is booting: then all six contend for it at once."""
    with ExitStack() as stack:
        daemons = [
            DaemonProc(tmp_path / f"daemon{n}", db_path=db, wait=None) for n in range(DAEMONS)
        ]
        with migration_lock(db, timeout=10.0):
            clis = []
            for n, daemon in enumerate(daemons):
                stack.enter_context(daemon)
                if n % 2 == 0 and len(clis) < CLIS:
                    clis.append(_start_cli(db))
            _wait_until_booting(daemons)
            time.sleep(BARRIER_SECONDS)  # time to reach the lock and start polling it
        summaries = []
        for cli in clis:
            out, err = cli.communicate(timeout=SETTLE_SECONDS)
            assert cli.returncode == 0, f"migrate run exited {cli.returncode}: {err}"
            summaries.append(json.loads(out))
        bodies = [_settle(d) for d in daemons]
        pubkeys = [
            d.request("GET", "/v1/pubkey")
            for d, b in zip(daemons, bodies, strict=True)
            if _serving(b)
        ]
        for daemon, body in zip(daemons, bodies, strict=True):
            assert daemon.stop() == 0, daemon.log_text()
            if _serving(body):
                assert "Traceback" not in daemon.log_text(), daemon.log_text()
    return bodies, summaries, pubkeys


def _wait_until_booting(daemons: list[DaemonProc]) -> None:
    deadline = time.monotonic() + SETTLE_SECONDS
    for daemon in daemons:
        while "keysmith starting" not in daemon.log_text():
            assert daemon.alive(), daemon.log_text()
            assert time.monotonic() < deadline, daemon.log_text()
            time.sleep(0.05)


def _serving(body: dict[str, Any]) -> bool:
    return body["state"] == "serving" and body["ok"] is True


def _assert_all_serving(bodies: list[dict[str, Any]]) -> None:
    """Every daemon serves. A daemon that could not get the migration lock in time would be
    in safe mode with a cause naming the lock; with the 120 s lock timeout none should be."""
    refused = [b["cause"] for b in bodies if not _serving(b)]
    assert not refused, refused


def _assert_each_version_applied_once(bodies: list, summaries: list, pending: list[int]) -> None:
    docs = [*(b for b in bodies if _serving(b)), *summaries]
    claims = Counter(v for doc in docs for v in doc["applied"])
    assert sorted(claims) == pending and set(claims.values()) == {1}, claims
    # The winner of the lock applied everything pending in one run; the rest found nothing.
    assert len([doc for doc in docs if doc["applied"]]) == 1, docs
    assert all(not doc["heals"] for doc in docs)
    final = _all_versions()[-1]
    assert {doc["schema_version"] for doc in docs} == {final}
    # A refused daemon must not have touched the database at all.
    assert all(not b["applied"] for b in bodies if not _serving(b))


def _assert_ledger_complete(conn: sqlite3.Connection) -> None:
    rows = conn.execute("SELECT version, success FROM _sqlx_migrations ORDER BY version").fetchall()
    assert rows == [(v, 1) for v in _all_versions()]
    assert conn.execute("SELECT count(*) FROM _keysmith_heal_log").fetchone() == (0,)


def _schema(conn: sqlite3.Connection) -> list[tuple]:
    return conn.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
    ).fetchall()


def _table_rows(conn: sqlite3.Connection, table: str) -> list[tuple]:
    width = len(conn.execute(f'PRAGMA table_info("{table}")').fetchall())
    order = ", ".join(str(i + 1) for i in range(width))
    return conn.execute(f'SELECT * FROM "{table}" ORDER BY {order}').fetchall()


def _reference(tmp_path: Path, source: Path | None) -> sqlite3.Connection:
    """The same starting database migrated by one process alone."""
    ref = tmp_path / "reference" / "keysmith.db"
    ref.parent.mkdir()
    if source is not None:
        shutil.copyfile(source, ref)
    kit.apply_range(ref)
    return kit.connect(ref)


def test_four_daemons_and_two_clis_on_a_fresh_database(tmp_path):
    db = tmp_path / "data" / "keysmith.db"
    db.parent.mkdir()
    bodies, summaries, pubkeys = _race(tmp_path, db)

    _assert_each_version_applied_once(bodies, summaries, _all_versions())
    # Every daemon serves the one issuer key that the first boot created.
    assert pubkeys and {status for status, _ in pubkeys} == {200}
    assert len({body["public_key_pem"] for _, body in pubkeys}) == 1
    with closing(kit.connect(db)) as conn, closing(_reference(tmp_path, None)) as ref:
        kit.assert_db_clean(conn)
        _assert_ledger_complete(conn)
        assert _schema(conn) == _schema(ref)
        assert conn.execute("SELECT count(*), sum(active) FROM issuer_keys").fetchone() == (1, 1)
        assert conn.execute(
            "SELECT value FROM settings WHERE key = 'admin_api_key'"
        ).fetchall() == [(DEFAULT_ADMIN_KEY,)]
        actions = Counter(a for (a,) in conn.execute("SELECT action FROM audit_log"))
        assert actions == {"issuer_key.create": 1, "admin_key.set": 1}, actions
    _assert_all_serving(bodies)


def test_four_daemons_and_two_clis_upgrade_a_populated_v8_database(tmp_path):
    db = tmp_path / "data" / "keysmith.db"
    db.parent.mkdir()
    kit.apply_range(db, upto=8)
    with closing(kit.connect(db)) as conn:
        seeded = seed(conn, 8, scale=SEED_SCALE, now=SEED_NOW)
    start = tmp_path / "v8.db"
    shutil.copyfile(db, start)  # no WAL left behind: kit.connect closed the only connection

    bodies, summaries, _ = _race(tmp_path, db)

    _assert_each_version_applied_once(bodies, summaries, [v for v in _all_versions() if v > 8])
    # One migrating run, so one pre-upgrade backup, holding exactly the v8 database.
    [backup] = (db.parent / "backups").glob("*.sqlite3")
    assert "pre-v8" in backup.name
    with closing(sqlite3.connect(backup)) as copy, closing(sqlite3.connect(start)) as original:
        assert kit.dump(copy, include_ledger=True) == kit.dump(original, include_ledger=True)
    with closing(kit.connect(db)) as conn, closing(_reference(tmp_path, start)) as ref:
        kit.assert_db_clean(conn)
        _assert_ledger_complete(conn)
        assert _schema(conn) == _schema(ref)
        tables = [name for kind, name, _t, _s in _schema(ref) if kind == "table"]
        for table in tables:
            if table in (*BOOT_WRITES, *kit.OWN_TABLES) or table.startswith("sqlite_"):
                continue
            assert _table_rows(conn, table) == _table_rows(ref, table), table
        assert all(
            conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] >= n
            for t, n in seeded.items()
        )
        # The boots' only writes: the admin key from the environment, set once, and its audit row.
        settings = {k: (v, at) for k, v, at in _table_rows(conn, "settings")}
        ref_settings = {k: (v, at) for k, v, at in _table_rows(ref, "settings")}
        assert settings.pop("admin_api_key")[0] == DEFAULT_ADMIN_KEY
        ref_settings.pop("admin_api_key")
        assert settings == ref_settings
        audit, ref_audit = _table_rows(conn, "audit_log"), _table_rows(ref, "audit_log")
        added = audit[len(ref_audit) :]
        assert audit[: len(ref_audit)] == ref_audit
        assert [row[3] for row in added] == ["admin_key.set"], added
    _assert_all_serving(bodies)


def test_daemons_started_one_after_another_on_one_database_all_serve(tmp_path):
    """Deterministic form of the race above: each daemon is serving before the next starts."""
    db = tmp_path / "data" / "keysmith.db"
    with ExitStack() as stack:
        bodies = []
        for n in range(DAEMONS):
            daemon = stack.enter_context(DaemonProc(tmp_path / f"daemon{n}", db_path=db, wait=None))
            bodies.append(_settle(daemon))
            # No daemon has crashed, so none may say that a previous run did not stop cleanly.
            assert "did not stop cleanly" not in daemon.log_text(), daemon.log_text()
        assert [b["state"] for b in bodies] == ["serving"] * DAEMONS, [b["cause"] for b in bodies]
