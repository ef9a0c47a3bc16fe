"""Run the real daemon (`python -m daemon serve`) as a subprocess on a loopback port.

Every subprocess test in the suite uses this::

    from tests.daemon_proc import DaemonProc

    def test_something(tmp_path):
        with DaemonProc(tmp_path) as d:          # starts, waits until serving/blocked/failed
            status, body = d.request("GET", "/healthz")
            code, out, err = d.health()          # runs `python -m daemon health`
        # leaving the block stops it (SIGTERM) and kills it if it hangs

`DaemonProc(tmp_path, env={...}, migrations_dir=..., db_path=..., admin_key=..., port=...)`;
`.url`, `.port`, `.db_path`, `.proc`, `.env`, `.log_text()`, `.status()` (the status file),
`.wait_for(states)`, `.stop()` (SIGTERM, returns the exit code), `.kill()` (SIGKILL).
The daemon's stdout+stderr go to `<tmp_path>/daemon-<n>.log` (a file, so a chatty daemon can
never block on a full pipe).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_ADMIN_KEY = "test-admin-key-0123456789abcdef"
SETTLED = ("serving", "blocked", "failed")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The parent environment without any KEYSMITH_* leaking in from the developer's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYSMITH_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


class DaemonProc:
    def __init__(
        self,
        tmp_path: Path,
        *,
        env: dict[str, str] | None = None,
        db_path: Path | None = None,
        migrations_dir: Path | None = None,
        admin_key: str | None = DEFAULT_ADMIN_KEY,
        port: int | None = None,
        wait: tuple[str, ...] | None = SETTLED,
        timeout: float = 60.0,
    ) -> None:
        self.tmp_path = Path(tmp_path)
        self.db_path = Path(db_path) if db_path else self.tmp_path / "data" / "keysmith.db"
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        settings_env = {
            "KEYSMITH_DB_PATH": str(self.db_path),
            "KEYSMITH_BIND": f"127.0.0.1:{self.port}",
            # Tests and benchmarks send floods from one address on purpose; the rate limits
            # have their own tests (tests/test_keysat_contract.py), which turn them on.
            "KEYSMITH_RATE_LIMIT": "0",
            "KEYSMITH_WRITE_RATE_LIMIT": "0",
            # So are wrong discount codes (tests/test_attack_money.py turns these on).
            "KEYSMITH_CODE_CHECKS_PER_MINUTE": "0",
            "KEYSMITH_WRONG_CODES_PER_MINUTE": "0",
        }
        if admin_key is not None:
            settings_env["KEYSMITH_ADMIN_API_KEY"] = admin_key
        if migrations_dir is not None:
            settings_env["KEYSMITH_MIGRATIONS_DIR"] = str(migrations_dir)
        settings_env.update(env or {})
        self.env = base_env(settings_env)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None
        self._wait = wait
        self._timeout = timeout

    # ----- lifecycle -----

    def start(self) -> DaemonProc:
        n = 1
        while (self.tmp_path / f"daemon-{n}.log").exists():
            n += 1
        self.log_path = self.tmp_path / f"daemon-{n}.log"
        self.tmp_path.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "daemon", "serve"],
                env=self.env,
                cwd=self.tmp_path,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        if self._wait:
            self.wait_for(self._wait, timeout=self._timeout)
        return self

    def __enter__(self) -> DaemonProc:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the daemon if it still runs; never leaves a process behind."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.stop(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait, and return the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.kill()
        return self.proc.wait(timeout=10)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_for(self, states: tuple[str, ...] | str, timeout: float = 60.0) -> dict[str, Any]:
        """Wait until this process's status file shows one of `states`; return the record."""
        wanted = (states,) if isinstance(states, str) else tuple(states)
        deadline = time.monotonic() + timeout
        record: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            record = self.status()
            if record and record.get("pid") == self.proc.pid:
                if record.get("state") in wanted:
                    return record
                if record.get("state") in SETTLED:  # settled elsewhere: no point waiting
                    raise AssertionError(
                        f"daemon settled in {record['state']!r}, not {wanted}; status={record}"
                        f"\n--- log ---\n{self.log_text()}"
                    )
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"daemon exited with {self.proc.returncode} before reaching {wanted}; "
                    f"status={record}\n--- log ---\n{self.log_text()}"
                )
            time.sleep(0.05)
        raise AssertionError(
            f"daemon did not reach {wanted} within {timeout} s; status={record}\n"
            f"--- log ---\n{self.log_text()}"
        )

    # ----- observation -----

    @property
    def status_path(self) -> Path:
        return self.db_path.parent / "keysmith-status.json"

    def status(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.status_path.read_text())
        except (OSError, ValueError):
            return None

    def log_text(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def health(self, timeout: float = 30.0) -> tuple[int, str, str]:
        """Run `python -m daemon health` with this daemon's environment."""
        done = subprocess.run(
            [sys.executable, "-m", "daemon", "health"],
            env=self.env,
            cwd=self.tmp_path,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return done.returncode, done.stdout, done.stderr

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> tuple[int, Any]:
        """One HTTP request; returns (status, parsed JSON or text). Errors are answers too."""
        data = None if body is None else json.dumps(body).encode()
        all_headers = {"Content-Type": "application/json"} if data is not None else {}
        all_headers.update(headers or {})
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=all_headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, raw, ctype = resp.status, resp.read(), resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            status, raw, ctype = e.code, e.read(), e.headers.get("Content-Type", "")
        text = raw.decode("utf-8", errors="replace")
        if "json" in ctype:
            return status, json.loads(text)
        return status, text

    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.env['KEYSMITH_ADMIN_API_KEY']}"}
