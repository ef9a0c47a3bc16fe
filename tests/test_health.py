"""`python -m daemon health`, the StartOS health check, run as the real command.

StartOS execs it every 15 s inside the container and shows stderr to the operator, so each
case checks the exit code StartOS maps (0 ready, 60 starting, 61 loading, else failure) and that
the message reads as an explanation, not a stack trace. The status files here are written the
way the daemon writes them (through daemon.status), for states a live daemon passes through too
quickly to catch.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from daemon.status import BootHistory, Cause, Lifecycle
from tests.daemon_proc import DaemonProc, base_env, free_port

HEAVY_MODULES = ("aiohttp", "aiosqlite", "prometheus_client", "cryptography", "uvloop")


def run_health(tmp_path: Path, port: int, *extra_args: str) -> tuple[int, str, str, float]:
    env = base_env(
        {
            "KEYSMITH_DB_PATH": str(tmp_path / "data" / "keysmith.db"),
            "KEYSMITH_BIND": f"127.0.0.1:{port}",
        }
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, *extra_args, "-m", "daemon", "health"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stdout, done.stderr, time.monotonic() - started


def lifecycle_for(
    tmp_path: Path, port: int, *, pid: int | None = None, history: BootHistory | None = None
) -> Lifecycle:
    """A status file written through the daemon's own code, owned by `pid` (default: us)."""
    data = tmp_path / "data"
    data.mkdir(parents=True, exist_ok=True)
    lifecycle = Lifecycle(
        data / "keysmith-status.json",
        version="test",
        bind=f"127.0.0.1:{port}",
        history=history or BootHistory(0, 0, None, None),
    )
    lifecycle.update(pid=pid or os.getpid())
    return lifecycle


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_nothing_answering_and_no_status_file_is_a_failure_that_says_where_it_looked(tmp_path):
    port = free_port()
    code, out, err, _ = run_health(tmp_path, port)
    assert code == 1 and out == ""
    assert f"127.0.0.1:{port}" in err and "keysmith-status.json" in err
    assert "logs" in err and "Traceback" not in err


def test_starting_is_exit_60(tmp_path):
    port = free_port()
    lifecycle_for(tmp_path, port)  # a fresh record is in state "starting"
    code, _, err, _ = run_health(tmp_path, port)
    assert code == 60 and "starting" in err


def test_migrating_is_exit_61_with_progress_for_the_operator(tmp_path):
    port = free_port()
    lifecycle = lifecycle_for(tmp_path, port)
    lifecycle.update(
        state="migrating",
        progress={
            "version": 7,
            "description": "storefront display fields",
            "index": 3,
            "total": 5,
            "action": "apply",
        },
    )
    code, out, err, _ = run_health(tmp_path, port)
    assert (code, out) == (61, "")
    assert "applying migration 7 (storefront display fields)" in err
    assert "step 3 of 5" in err and "Do not stop" in err

    lifecycle.update(
        progress={
            "version": None,
            "description": "backup",
            "index": 0,
            "total": 5,
            "action": "backup",
        }
    )
    code, _, err, _ = run_health(tmp_path, port)
    assert code == 61 and "taking a backup" in err and "None" not in err


def test_a_dead_daemon_is_a_failure_even_if_its_last_state_was_fine(tmp_path):
    port = free_port()
    lifecycle = lifecycle_for(tmp_path, port, pid=dead_pid())
    lifecycle.update(
        state="migrating",
        progress={"version": 4, "description": "x", "index": 1, "total": 2, "action": "apply"},
    )
    code, _, err, _ = run_health(tmp_path, port)
    assert code == 1 and "not running" in err and "migrating" in err


def test_a_stopped_daemon_is_a_failure(tmp_path):
    port = free_port()
    lifecycle = lifecycle_for(tmp_path, port)
    lifecycle.mark_serving()
    lifecycle.mark_stopped()
    code, _, err, _ = run_health(tmp_path, port)
    assert code == 1 and "not running" in err and "serving" in err


def test_serving_but_silent_times_out_quickly(tmp_path):
    # A listener that accepts and never answers: the check must give up well inside StartOS's
    # 30 s health-check timeout and say so.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        lifecycle = lifecycle_for(tmp_path, port)
        lifecycle.mark_serving(schema_version=11)
        code, _, err, elapsed = run_health(tmp_path, port)
    assert code == 1 and "did not answer" in err
    assert elapsed < 15


class _OtherService(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"ok": True, "status": "ok"}).encode()  # healthy, but not Keysmith
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_another_service_on_the_port_does_not_pass_for_keysmith(tmp_path):
    server = http.server.HTTPServer(("127.0.0.1", 0), _OtherService)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        lifecycle = lifecycle_for(tmp_path, port)
        lifecycle.enter_safe_mode(
            "failed",
            Cause(
                kind="port",
                message=f"could not listen on 127.0.0.1:{port}: address in use.",
                remedy="set KEYSMITH_BIND to a free host:port",
                data_intact=True,
            ),
        )
        code, out, err, _ = run_health(tmp_path, port)
    finally:
        server.shutdown()
        server.server_close()
    assert code == 1 and out == ""
    assert "could not listen" in err and "Your data is intact" in err


def test_blocked_message_lists_every_blocker_with_its_remedy(tmp_path):
    port = free_port()
    lifecycle = lifecycle_for(tmp_path, port, history=BootHistory(2, 0, "earlier", None))
    lifecycle.enter_safe_mode(
        "blocked",
        Cause(
            kind="blocked",
            message="Keysmith refused to migrate the database.",
            remedy="install the previous version of Keysmith",
            data_intact=True,
            blockers=[
                {
                    "version": 10,
                    "description": "multi currency prices",
                    "finding": "the file changed after it was applied.",
                    "remedy": "reinstall",
                },
                {
                    "version": 12,
                    "description": "gone",
                    "finding": "applied but missing from this release.",
                    "remedy": "upgrade",
                },
            ],
        ),
    )
    code, out, err, _ = run_health(tmp_path, port)
    assert code == 1 and out == ""
    lines = err.splitlines()
    assert lines[0] == (
        "Keysmith is in safe mode (blocked): the database upgrade was refused "
        "before anything was changed, because of 2 migrations:"
    )
    assert lines[1] == (
        "- migration 10 (multi currency prices): the file changed after it was "
        "applied. To fix: reinstall."
    )
    assert lines[2] == (
        "- migration 12 (gone): applied but missing from this release. To fix: upgrade."
    )
    assert "Your data is intact" in err
    assert "What to do: install the previous version of Keysmith" in err
    assert "3 boots in a row have not reached serving." in err


def test_health_of_a_serving_daemon_asks_http_and_imports_nothing_heavy(tmp_path):
    with DaemonProc(tmp_path) as d:
        d.wait_for("serving")
        code, out, err, elapsed = run_health(tmp_path, d.port, "-X", "importtime")
        assert code == 0 and out.startswith("ready, schema v")
        imported = {
            line.rsplit("|", 1)[-1].strip().split(".")[0]
            for line in err.splitlines()
            if line.startswith("import time:")
        }
        assert imported.isdisjoint(HEAVY_MODULES), imported & set(HEAVY_MODULES)
        assert elapsed < 10
        # The answer comes from HTTP: without the status file it is still "ready".
        d.status_path.unlink()
        code, out, _, _ = run_health(tmp_path, d.port)
        assert code == 0 and out.startswith("ready, schema v")
