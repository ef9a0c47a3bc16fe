"""Actions that write run in their own process while the daemon serves the same file.

The promise: what an action wrote is what the serving daemon answers from the next request
on. A revoke done by the StartOS action must make `POST /v1/validate` answer revoked at once,
exactly as a revoke through the admin API does.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.daemon_proc import REPO, DaemonProc
from tests.test_api_support import issue, make_product, must


def run_action(daemon: DaemonProc, name: str, form: dict) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "daemon", "action", name, json.dumps(form)],
        capture_output=True, text=True, env=daemon.env, cwd=REPO, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def validate(daemon: DaemonProc, key: str) -> dict:
    return must(daemon.request("POST", "/v1/validate", {"key": key}), 200)


def test_revoke_by_action_is_seen_by_the_serving_daemon(tmp_path):
    with DaemonProc(tmp_path) as daemon:
        product = make_product(daemon)
        lic = issue(daemon, product)
        assert validate(daemon, lic["license_key"])["ok"] is True
        revoked = run_action(daemon, "revoke-license", {"license_id": lic["license_id"]})
        assert "is now revoked" in revoked["message"]
        answer = validate(daemon, lic["license_key"])
        assert answer == {"ok": False, "reason": "revoked"}, answer


def test_a_license_issued_by_action_validates_on_the_serving_daemon(tmp_path):
    with DaemonProc(tmp_path) as daemon:
        product = make_product(daemon)
        issued = run_action(daemon, "issue-license", {"product": product})
        answer = validate(daemon, issued["result"]["value"])
        assert answer["ok"] is True, answer
