"""The boot lifecycle, told as the incidents it exists for. The daemon runs as a real subprocess
on a loopback port with a real SQLite file; every scenario ends with the process stopped by
SIGTERM, as StartOS stops it.

The story behind all of them: a Rust licensing daemon refused to boot on a drifted migration
checksum, exited, and StartOS restarted it every 15 s forever. Keysmith heals what it can prove,
and on anything else stays up in safe mode and tells the operator why.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import shutil
import socket
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from tests import kit, migfiles
from tests.daemon_proc import DaemonProc

REPO_MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
INCIDENT_CHECKSUM = b"\xef" * 48  # what the poisoned v9 ledger row held in the incident


def migration_file(folder: Path, version: int) -> Path:
    (path,) = [
        p
        for p in folder.glob("*_*.sql")
        if int(p.name.split("_", 1)[0]) == version and not p.name.endswith(".down.sql")
    ]
    return path


def copy_migrations(tmp_path: Path) -> Path:
    target = tmp_path / "migrations"
    shutil.copytree(REPO_MIGRATIONS, target)
    return target


def user_dump(db_path: Path) -> str:
    """Canonical schema+data dump without the migrator's own tables (the kit's)."""
    conn = kit.connect(db_path)
    try:
        kit.assert_db_clean(conn)
        return kit.dump(conn)
    finally:
        conn.close()


def file_state(db_path: Path) -> dict[str, str | None]:
    """Digest of the database file and its WAL/journal, to prove nothing was written."""
    state = {}
    for suffix in ("", "-wal", "-journal"):
        path = db_path.with_name(db_path.name + suffix)
        state[suffix or "db"] = (
            hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None
        )
    return state


def metric_value(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def assert_safe_mode_http(d: DaemonProc, state: str) -> dict:
    status, body = d.request("GET", "/healthz")
    assert status == 503 and body["ok"] is False and body["state"] == state, body
    status, other = d.request("GET", "/v1/products")
    assert status == 503 and other["error"] == "safe_mode", other
    assert body["cause"]["message"] in other["message"]
    status, text = d.request("GET", "/metrics")
    assert (
        status == 200
        and metric_value(text, "keysmith_lifecycle_state", keysmith_lifecycle_state=state) == 1.0
    )
    return body


def test_first_boot_migrates_every_version_then_serves(tmp_path):
    latest = kit.latest_version(REPO_MIGRATIONS)
    with DaemonProc(tmp_path) as d:
        record = d.wait_for("serving")
        assert record["schema_version"] == latest
        assert record["applied"] == sorted(record["applied"]) and record["applied"][-1] == latest
        assert record["previous_unclean"] is None and record["consecutive_failed_boots"] == 0

        code, out, err = d.health()
        assert (code, out.strip(), err) == (0, f"ready, schema v{latest}", "")

        status, body = d.request("GET", "/healthz")
        assert status == 200 and body["ok"] is True and body["state"] == "serving"
        assert body["schema_version"] == latest and body["service"] == "keysmith"

        stats_path = d.db_path.parent / "start9" / "stats.yaml"
        stats = json.loads(stats_path.read_text())  # JSON is YAML; StartOS reads it as such
        assert stats["version"] == 2 and stats_path.stat().st_mode & 0o777 == 0o600
        props = stats["data"]
        assert props["Schema version"]["value"] == str(latest)
        assert props["Self-heals"]["value"] == "0 at the last boot, 0 in total"
        assert props["Admin API key"]["value"] == d.env["KEYSMITH_ADMIN_API_KEY"]
        assert props["Admin API key"]["masked"] is True
        _, pubkey = d.request("GET", "/v1/pubkey")
        assert props["Issuer public key"]["value"] == pubkey["public_key_pem"]
        assert all(
            set(v) == {"type", "value", "description", "copyable", "qr", "masked"}
            for v in props.values()
        )

        status, missing = d.request("GET", "/no/such/route")
        assert status == 404 and missing == {
            "ok": False,
            "error": "not_found",
            "message": "no route for GET /no/such/route",
        }

        assert d.stop() == 0
    after = d.status()
    assert after["state"] == "stopped" and after["clean_stop"] is True
    assert after["last_state"] == "serving"
    assert "Traceback" not in d.log_text()
    assert kit.checksums(d.db_path).keys() == set(range(1, latest + 1))


def test_cosmetic_drift_is_restamped_without_rerun(tmp_path):
    # A release built on a Windows checkout: the same SQL with CRLF line ends. sqlx would refuse
    # ("previously applied but has been modified"); the bytes prove it is the same migration.
    migrations = copy_migrations(tmp_path)
    latest = kit.latest_version(migrations)
    with DaemonProc(tmp_path, migrations_dir=migrations) as first:
        first.wait_for("serving")
    before = user_dump(first.db_path)
    drifted = migration_file(migrations, latest)  # additive: a re-run would break it
    drifted.write_bytes(drifted.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))

    with DaemonProc(tmp_path, migrations_dir=migrations) as d:
        record = d.wait_for("serving")
        assert [(h["version"], h["action"]) for h in record["heals"]] == [(latest, "restamp")]
        warn = [
            line
            for line in d.log_text().splitlines()
            if " WARN keysmith.migrate " in line and f"migration {latest} " in line
        ]
        assert len(warn) == 1, d.log_text()
        assert "evidence=" in warn[0]  # the context is on the line, not lost by the format
        _, text = d.request("GET", "/metrics")
        assert (
            metric_value(
                text, "migrations_self_healed_total", version=str(latest), action="restamp"
            )
            == 1.0
        )
        code, out, _ = d.health()
        assert (code, out.strip()) == (0, f"ready, schema v{latest}, 1 self-heal at this boot")
        stats = json.loads((d.db_path.parent / "start9" / "stats.yaml").read_text())
        assert stats["data"]["Self-heals"]["value"] == "1 at the last boot, 1 in total"
    assert user_dump(d.db_path) == before
    assert kit.checksums(d.db_path)[latest] == hashlib.sha384(drifted.read_bytes()).digest()


def test_incident_poisoned_v9_checksum_is_rerun_and_serving(tmp_path):
    # The original incident: v9's ledger checksum no longer matched (48 bytes of 0xEF here).
    # v9 is certified idempotent, so the daemon re-runs it after a backup instead of refusing.
    migrations = copy_migrations(tmp_path)
    latest = kit.latest_version(migrations)
    with DaemonProc(tmp_path, migrations_dir=migrations) as first:
        first.wait_for("serving")
    conn = sqlite3.connect(first.db_path)
    with conn:
        conn.execute(
            "UPDATE _sqlx_migrations SET checksum = ? WHERE version = 9", (INCIDENT_CHECKSUM,)
        )
    conn.close()
    before = user_dump(first.db_path)

    with DaemonProc(tmp_path, migrations_dir=migrations) as d:
        record = d.wait_for("serving")
        assert [(h["version"], h["action"]) for h in record["heals"]] == [(9, "rerun")]
        assert Path(record["heals"][0]["backup_path"]).is_file()
        assert any(
            " WARN keysmith.migrate " in line and "migration 9 " in line
            for line in d.log_text().splitlines()
        ), d.log_text()
        _, text = d.request("GET", "/metrics")
        assert (
            metric_value(text, "migrations_self_healed_total", version="9", action="rerun") == 1.0
        )
        code, out, _ = d.health()
        assert (code, out.strip()) == (0, f"ready, schema v{latest}, 1 self-heal at this boot")
    rows = kit.checksums(d.db_path)
    for version in (9, 10):
        assert (
            rows[version]
            == hashlib.sha384(migration_file(migrations, version).read_bytes()).digest()
        )
    assert user_dump(d.db_path) == before


def test_blocked_upgrade_stays_up_in_safe_mode_and_changes_nothing(tmp_path):
    # A release edited an additive migration after it shipped. Not provably cosmetic, not
    # re-runnable: the migrator refuses, and the daemon must not exit into a restart loop.
    migrations = copy_migrations(tmp_path)
    latest = kit.latest_version(migrations)
    with DaemonProc(tmp_path, migrations_dir=migrations) as first:
        first.wait_for("serving")
    edited = migration_file(migrations, latest)
    edited.write_text(edited.read_text() + "\nCREATE TABLE release_note (x INTEGER);\n")
    dump_before = user_dump(first.db_path)
    before = file_state(first.db_path)

    with DaemonProc(tmp_path, migrations_dir=migrations) as d:
        record = d.wait_for("blocked")
        assert [b["version"] for b in record["cause"]["blockers"]] == [latest]
        time.sleep(20)  # StartOS would have restarted a crashed daemon once already
        assert d.alive()
        code, out, err = d.health()
        assert code == 1 and out == ""
        assert f"migration {latest}" in err
        assert "Your data is intact" in err
        assert "install the previous version" in err
        # Nothing changed and no backup was taken: restoring an older one would lose data.
        assert "Restore pre-upgrade backup" not in err
        assert_safe_mode_http(d, "blocked")
        assert file_state(d.db_path) == before
        assert any(" ERROR " in line and "remedy=" in line for line in d.log_text().splitlines())
        assert d.stop() == 0
    assert file_state(d.db_path) == before
    assert user_dump(d.db_path) == dump_before
    assert d.status()["clean_stop"] is True


def test_migration_failing_midway_is_rolled_back_and_reported(tmp_path):
    migrations = migfiles.write(
        tmp_path / "migrations",
        {
            "0001_customers.sql": "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT);\n"
            "INSERT INTO customers (name) VALUES ('ada');\n",
            "0002_orders.sql": "CREATE TABLE orders (id INTEGER PRIMARY KEY);\n",
            "0003_broken.sql": "CREATE TABLE invoices (id INTEGER PRIMARY KEY);\n"
            "INSERT INTO no_such_table VALUES (1);\n",
        },
    )
    with DaemonProc(tmp_path, migrations_dir=migrations) as d:
        record = d.wait_for("failed")
        assert record["cause"]["kind"] == "sql_error"
        assert record["cause"]["data_intact"] is True
        assert d.alive()
        code, out, err = d.health()
        assert code == 1 and out == "" and "migration 3" in err and "no_such_table" in err, err
        assert "Your data is intact" in err and "install the previous version" in err
        assert_safe_mode_http(d, "failed")
        _, text = d.request("GET", "/metrics")
        assert metric_value(text, "keysmith_migrations_failed_total", reason="sql_error") == 1.0
        assert d.stop() == 0
    assert sorted(kit.checksums(d.db_path)) == [1, 2]
    conn = sqlite3.connect(d.db_path)
    tables = {n for (n,) in conn.execute("SELECT name FROM sqlite_schema WHERE type='table'")}
    conn.close()
    assert "invoices" not in tables and {"customers", "orders"} <= tables


def test_a_failed_no_transaction_migration_says_where_it_left_the_database(tmp_path):
    # Issue 11, defect 2: on a fresh database the table this migration created stayed behind
    # while the message said "rolled back", and every later boot failed on it.
    migrations = copy_migrations(tmp_path)
    latest = kit.latest_version(migrations)
    outside = f"{latest + 1:04d}_outside.sql"
    broken = "-- no-transaction\nCREATE TABLE outside (x);\nINSERT INTO no_such_table VALUES (1);\n"
    migfiles.write(migrations, {outside: broken})
    with DaemonProc(tmp_path, migrations_dir=migrations) as d:
        record = d.wait_for("failed")
        assert record["cause"]["kind"] == "sql_error", record["cause"]
        code, _, err = d.health()
        assert code == 1 and "the backup taken before this run was restored" in err, err
        assert "with no schema yet" in err, err
        assert f"Migrations {', '.join(map(str, range(1, latest + 1)))}, applied earlier" in err
        assert "will run again" in err and "install the previous version of Keysmith" in err
    # The fixed release boots from where the message said the database was.
    migfiles.write(migrations, {outside: "-- no-transaction\nCREATE TABLE outside (x);\n"})
    with DaemonProc(tmp_path, migrations_dir=migrations) as d:
        assert d.wait_for("serving")["applied"] == list(range(1, latest + 2))


class _Squatter(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"another service lives here\n")

    def log_message(self, *args):
        pass


def test_port_already_taken_stays_alive_without_http(tmp_path):
    squatter = http.server.HTTPServer(("127.0.0.1", 0), _Squatter)
    port = squatter.server_address[1]
    thread = threading.Thread(target=squatter.serve_forever, daemon=True)
    thread.start()
    try:
        with DaemonProc(tmp_path, port=port) as d:
            record = d.wait_for("failed")
            assert record["cause"]["kind"] == "port" and record["http"] is False
            time.sleep(1)
            assert d.alive()
            # The health check must not mistake the squatter for Keysmith.
            code, out, err = d.health()
            assert code == 1 and out == "" and f"could not listen on 127.0.0.1:{port}" in err
            assert "KEYSMITH_BIND" in err
            assert d.stop() == 0
    finally:
        squatter.shutdown()
        squatter.server_close()


SLOW_SQL = (
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000000) "
    "SELECT count(*) FROM n;\n"
)


def _wait_migrating_version(d: DaemonProc, version: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = d.status() or {}
        progress = record.get("progress") or {}
        if record.get("pid") == d.proc.pid and progress.get("version") == version:
            return
        assert d.alive(), d.log_text()
        time.sleep(0.02)
    raise AssertionError(f"never saw migration {version} in progress: {d.status()}")


def test_three_crashed_boots_lead_to_safe_mode_without_touching_the_database(tmp_path):
    # Something kills the daemon mid-migration every time (here: SIGKILL during a slow one,
    # as an OOM killer would). After three, the fourth boot must not try again blindly.
    migrations = migfiles.write(
        tmp_path / "migrations",
        {
            "0001_base.sql": "CREATE TABLE base (id INTEGER PRIMARY KEY);\n",
            "0002_slow.sql": SLOW_SQL,
        },
    )
    for attempt in range(1, 4):
        d = DaemonProc(tmp_path, migrations_dir=migrations, wait=None).start()
        try:
            _wait_migrating_version(d, 2)
        finally:
            d.kill()
        if attempt > 1:
            assert "did not stop cleanly" in d.log_text()
    before = file_state(d.db_path)

    with DaemonProc(tmp_path, migrations_dir=migrations) as safe:
        record = safe.wait_for("failed")
        assert record["cause"]["kind"] == "crash_loop"
        assert record["consecutive_failed_boots"] == 4
        assert "migrating (version 2" in record["cause"]["message"]
        code, _, err = safe.health()
        assert code == 1 and "previous 3 boots ended without a clean stop" in err, err
        assert_safe_mode_http(safe, "failed")
        _, text = safe.request("GET", "/metrics")
        assert metric_value(text, "keysmith_consecutive_failed_boots") == 4.0
        assert file_state(safe.db_path) == before
        assert safe.stop() == 0

    # A restart (after the operator's fix) leaves safe mode and migrates again.
    retry = DaemonProc(tmp_path, migrations_dir=migrations, wait=None).start()
    try:
        _wait_migrating_version(retry, 2)
        code, _, err = retry.health()
        assert code == 61 and "migration 2" in err, err
    finally:
        retry.kill()


def _post_slowly(port: int, path: str, body: bytes, first_part: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    sock.sendall(head + body[:first_part])
    return sock


def test_sigterm_lets_the_in_flight_request_finish_then_stops_cleanly(tmp_path):
    with DaemonProc(tmp_path) as d:
        d.wait_for("serving")
        body = b'{"key": "LIC1-NOTAKEY-NOTASIG", "product_slug": "nothing"}'
        sock = _post_slowly(d.port, "/v1/validate", body, first_part=10)
        time.sleep(0.5)  # the handler is now waiting for the rest of the body
        started = time.monotonic()
        d.proc.send_signal(15)
        time.sleep(0.5)
        assert d.alive()  # still finishing the request
        with pytest.raises(ConnectionRefusedError):  # but no longer accepting new ones
            socket.create_connection(("127.0.0.1", d.port), timeout=5)
        sock.sendall(body[10:])
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        sock.close()
        assert answer.startswith(b"HTTP/1.1 200 "), answer
        assert b'"reason"' in answer  # the licensing API's own verdict on the key
        assert d.proc.wait(timeout=30) == 0
        assert time.monotonic() - started < 30
    assert d.status()["clean_stop"] is True


def test_a_boot_after_an_unclean_stop_says_so_and_still_serves(tmp_path):
    with DaemonProc(tmp_path) as first:
        first.wait_for("serving")
        first.kill()  # power cut / OOM kill: no chance to mark a clean stop
    with DaemonProc(tmp_path) as d:
        record = d.wait_for("serving")
        assert f"pid {first.proc.pid}" in record["previous_unclean"]
        assert "while serving" in record["previous_unclean"]
        # Counted for the next boot; shown as 0, since this boot serves.
        assert record["failed_before"] == 1 and record["consecutive_failed_boots"] == 0
        assert any(
            " WARN keysmith.boot " in line and "did not stop cleanly" in line
            for line in d.log_text().splitlines()
        )
        code, out, _ = d.health()
        assert code == 0 and out.strip().endswith("the previous run did not stop cleanly")
    # That boot served and stopped cleanly: the next one starts with a clean history.
    with DaemonProc(tmp_path) as d:
        record = d.wait_for("serving")
        assert record["previous_unclean"] is None and record["consecutive_failed_boots"] == 0


def test_an_unreadable_status_file_does_not_stop_the_boot(tmp_path):
    status = tmp_path / "data" / "keysmith-status.json"
    status.parent.mkdir(parents=True)
    status.write_bytes(b'{"state": "serving", "crashes_before": "many", "cause": [1]')
    with DaemonProc(tmp_path) as d:
        record = d.wait_for("serving")
        assert record["consecutive_failed_boots"] == 0
    status.write_text(
        json.dumps(
            {
                "state": "migrating",
                "crashes_before": "many",
                "cause": [1],
                "progress": "x",
                "pid": None,
            }
        )
    )
    with DaemonProc(tmp_path) as d:
        record = d.wait_for("serving")
        assert record["failed_before"] == 1 and record["previous_unclean"]


def test_http_errors_use_the_json_envelope_and_bodies_are_bounded(tmp_path):
    with DaemonProc(tmp_path) as d:
        d.wait_for("serving")
        status, body = d.request("POST", "/v1/validate", {"key": "x" * 100_000})
        assert status == 413 and body["ok"] is False and body["error"] == "payload_too_large"
        assert str(64 * 1024) in body["message"]

        status, body = d.request("DELETE", "/healthz")
        assert status == 405 and body["error"] == "method_not_allowed"
        assert "GET" in body["message"]

        status, body = d.request("GET", "/healthz")  # still serving after both
        assert status == 200 and body["state"] == "serving"


def test_sigterm_while_migrating_stops_between_two_migrations_then_resumes(tmp_path):
    # StartOS stops with SIGTERM and SIGKILLs after the sigterm-timeout. A long upgrade must not
    # run into that: the daemon finishes the migration in hand, stops cleanly, and the next
    # start applies the rest.
    migrations = copy_migrations(tmp_path)
    first_slow = kit.latest_version(migrations) + 1
    slow = range(first_slow, first_slow + 6)
    migfiles.write(
        migrations,
        {
            f"{v:04d}_slow_{v}.sql": (  # about half a second each
                f"CREATE TABLE slow_{v} AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL "
                "SELECT i + 1 FROM n WHERE i < 3000000) SELECT count(*) AS rows_counted FROM n;\n"
            )
            for v in slow
        },
    )
    with DaemonProc(tmp_path, migrations_dir=migrations, wait=None) as d:
        _wait_migrating_version(d, first_slow + 1)
        d.proc.send_signal(15)
        assert d.proc.wait(timeout=30) == 0, d.log_text()
        record = d.status()
        assert record["clean_stop"] is True and record["state"] == "stopped", record
        assert "stopped between two migrations" in d.log_text()
    applied = sorted(kit.checksums(d.db_path))
    done = [v for v in slow if v in applied]
    assert 1 <= len(done) < len(slow) and done == list(slow)[: len(done)]
    conn = sqlite3.connect(d.db_path)
    tables = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    conn.close()
    assert {f"slow_{v}" for v in slow} & tables == {f"slow_{v}" for v in done}

    with DaemonProc(tmp_path, migrations_dir=migrations) as again:
        assert again.wait_for("serving")["schema_version"] == slow[-1]


def test_a_boot_that_serves_after_failed_ones_shows_no_failed_boots(tmp_path):
    # Issue 20, item 12: three boots refused a malformed setting, the operator fixed it, and
    # the daemon served normally, while /healthz and the metric still said 3 failed boots.
    for _ in range(3):
        with DaemonProc(tmp_path, env={"KEYSMITH_LOG_FORMAT": "yaml"}) as refused:
            assert refused.wait_for("failed")["cause"]["kind"] == "settings"
    with DaemonProc(tmp_path) as d:
        record = d.wait_for("serving")
        assert record["failed_before"] == 3  # the history did count them
        assert record["consecutive_failed_boots"] == 0
        _, body = d.request("GET", "/healthz")
        assert body["state"] == "serving" and body["consecutive_failed_boots"] == 0, body
        _, text = d.request("GET", "/metrics")
        assert metric_value(text, "keysmith_consecutive_failed_boots") == 0.0
