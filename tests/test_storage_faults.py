"""Storage faults while serving, on real storage: a full disk (a small tmpfs filled up) and a
write lock held by another process past the busy timeout.

Each gives a clear refusal in the JSON envelope (507 with the cause, 503 with Retry-After),
changes nothing, shows a degraded state with its cause in /healthz, `python -m daemon health`
and /metrics, and clears by itself: a full disk at the next write that succeeds, a held lock
within seconds of its release even when no write comes.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import json
import os
import sqlite3
import time
from contextlib import closing
from pathlib import Path

from daemon.db import LOCK_RECHECK_SECONDS
from tests.daemon_proc import DaemonProc
from tests.test_api_support import admin, db_dump, issue, make_product, must, rows, unique
from tests.test_hostile_inputs import small_volume

DESCRIPTION = "d" * 2000  # each product row then takes a good part of a page


def new_product(proc: DaemonProc) -> tuple[int, dict]:
    return admin(
        proc,
        "POST",
        "/v1/admin/products",
        {"slug": unique("p"), "name": "P", "price_sats": 1, "description": DESCRIPTION},
    )


def post_with_headers(proc: DaemonProc, path: str, body: dict) -> tuple[int, dict, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=60)
    try:
        conn.request(
            "POST",
            path,
            body=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", **proc.admin_headers()},
        )
        response = conn.getresponse()
        return response.status, dict(response.headers), json.loads(response.read())
    finally:
        conn.close()


def degraded_gauge(proc: DaemonProc, cause: str) -> float:
    text = must(proc.request("GET", "/metrics"), 200)
    for line in text.splitlines():
        if line.startswith(f'keysmith_storage_degraded{{cause="{cause}"}}'):
            return float(line.split()[-1])
    raise AssertionError(f"no keysmith_storage_degraded sample for {cause}:\n{text}")


def fill(path: Path) -> None:
    """Write zeros into `path` until the filesystem is full."""
    chunk = b"\0" * (64 * 1024)
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
        small = b"\0" * 512
        try:
            while True:
                f.write(small)
        except OSError as e:
            assert e.errno == errno.ENOSPC, e


def assert_ready(proc: DaemonProc) -> None:
    status, body = proc.request("GET", "/healthz")
    assert status == 200 and body["ok"] is True and body["status"] == "ok", body
    assert body.get("degraded") is None, body
    code, out, err = proc.health()
    assert code == 0, (out, err)
    assert out.startswith("ready"), out


def test_disk_full_is_507_with_its_cause_and_recovers_when_space_returns(tmp_path):
    with (
        small_volume(tmp_path, 16) as volume,
        DaemonProc(tmp_path, db_path=volume / "keysmith.db") as proc,
    ):
        must(new_product(proc), 200)
        assert degraded_gauge(proc, "disk_full") == 0
        filler = volume / "filler"
        fill(filler)
        before = db_dump(proc)
        # The WAL may still have room for a few rows; write until the disk refuses.
        for _ in range(400):
            status, answer = new_product(proc)
            if status != 200:
                break
            before = db_dump(proc)
        assert status == 507, answer
        assert answer["ok"] is False and answer["error"] == "disk_full"
        assert "disk" in answer["message"] and "full" in answer["message"]
        assert "nothing was written" in answer["message"]
        assert db_dump(proc) == before

        status, health = proc.request("GET", "/healthz")
        assert status == 503, health
        assert health["status"] == "degraded" and health["error"] == "disk_full"
        assert health["degraded"]["cause"] == "disk_full"
        assert "full" in health["message"]
        code, _out, err = proc.health()
        assert code == 1, err
        assert "full" in err and "free space" in err
        assert degraded_gauge(proc, "disk_full") == 1
        # Reads still work while writes are refused.
        must(proc.request("GET", "/v1/products"), 200)
        # The lock recheck does not take a full disk for over: only a write can prove that.
        time.sleep(2 * LOCK_RECHECK_SECONDS)
        assert degraded_gauge(proc, "disk_full") == 1

        filler.unlink()
        must(new_product(proc), 200)
        assert_ready(proc)
        assert degraded_gauge(proc, "disk_full") == 0


def test_a_lock_held_past_the_busy_timeout_is_503_with_retry_after(tmp_path):
    with DaemonProc(tmp_path) as proc:
        must(new_product(proc), 200)
        before = db_dump(proc)
        with closing(sqlite3.connect(proc.db_path, isolation_level=None, timeout=0)) as holder:
            holder.execute("BEGIN IMMEDIATE")
            try:
                status, headers, answer = post_with_headers(
                    proc,
                    "/v1/admin/products",
                    {"slug": unique("p"), "name": "P", "price_sats": 1},
                )
                assert status == 503, answer
                assert answer["ok"] is False and answer["error"] == "database_busy"
                assert "locked" in answer["message"]
                assert int(headers["Retry-After"]) >= 1
                status, health = proc.request("GET", "/healthz")
                assert status == 503 and health["degraded"]["cause"] == "database_busy", health
                code, _out, err = proc.health()
                assert code == 1 and "locked" in err, err
                assert degraded_gauge(proc, "database_busy") == 1
                # Rechecked while held, the lock is still busy: the state stays.
                time.sleep(2 * LOCK_RECHECK_SECONDS)
                assert degraded_gauge(proc, "database_busy") == 1
            finally:
                holder.execute("ROLLBACK")
        # Released, and no write comes: the recheck sees the lock free and health recovers,
        # having written nothing.
        deadline = time.monotonic() + 30
        while degraded_gauge(proc, "database_busy") == 1:
            assert time.monotonic() < deadline, "still degraded after the lock was released"
            time.sleep(0.2)
        assert_ready(proc)
        assert db_dump(proc) == before
        must(new_product(proc), 200)


def free_bytes(folder: Path) -> int:
    stat = os.statvfs(folder)
    return stat.f_bavail * stat.f_frsize


def safe_mode_answer(proc: DaemonProc, timeout: float = 60) -> dict:
    """/healthz once the daemon settled, read over HTTP: a full disk leaves the status file
    unwritten, so DaemonProc.wait_for (which reads it) cannot tell."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.alive(), proc.log_text()
        try:
            status, body = proc.request("GET", "/healthz")
        except OSError:
            status, body = None, None  # not listening yet
        if isinstance(body, dict) and body.get("state") in ("serving", "blocked", "failed"):
            return {"http_status": status, **body}
        time.sleep(0.1)
    raise AssertionError(f"no settled /healthz within {timeout} s:\n{proc.log_text()}")


def test_a_boot_on_a_full_disk_says_disk_full_and_data_intact(tmp_path):
    # Issue 20, item 10: with 16 KB free, the boot called the database damaged (db_unreadable,
    # data_intact false) and advised restoring a backup, which loses every license since.
    with small_volume(tmp_path, 16) as volume:
        db = volume / "keysmith.db"
        with DaemonProc(tmp_path, db_path=db) as first:
            product = make_product(first)
            issued = {issue(first, product)["license_id"] for _ in range(20)}
        before = hashlib.sha256(db.read_bytes()).hexdigest()
        filler = volume / "filler"
        with open(filler, "wb") as f:
            f.write(b"\0" * (free_bytes(volume) - 16 * 1024))
        assert free_bytes(volume) == 16 * 1024

        with DaemonProc(tmp_path, db_path=db, wait=None) as full:
            answer = safe_mode_answer(full)
            assert answer["http_status"] == 503 and answer["state"] == "failed", answer
            cause = answer["cause"]
            assert cause["kind"] == "disk_full", cause
            assert cause["data_intact"] is True, cause
            assert "full" in cause["message"] and "not damaged" in cause["message"], cause
            assert cause["remedy"].startswith("free disk space"), cause
            assert "restart" in cause["remedy"] and "restore" not in cause["remedy"], cause
            code, _out, err = full.health()
            assert code == 1 and "full" in err and "data is intact" in err, err
        assert hashlib.sha256(db.read_bytes()).hexdigest() == before

        filler.unlink()
        with DaemonProc(tmp_path, db_path=db) as again:
            again.wait_for("serving")
            found = {r[0] for r in rows(again, "SELECT id FROM licenses")}
            assert found == issued
