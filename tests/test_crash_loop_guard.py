"""Issue 11, defect 4: the crash-loop guard counts only boots that never reached serving or
died soon after (within the healthy-serving window, KEYSMITH_HEALTHY_SERVING_SECONDS), never the
SIGKILL of a daemon that had been serving healthily (an OOM kill, a power cut).

Real daemons, real SIGKILLs. The kills after the window wait it out in real time: with a short
window configured in the default run, and with the default 60 s one behind `slow` (about four
minutes).
"""

from __future__ import annotations

import time

import pytest

from daemon.settings import DEFAULT_HEALTHY_SERVING_SECONDS
from daemon.status import CRASH_LIMIT
from tests.daemon_proc import DaemonProc


def serve_then_kill(tmp_path, wait_seconds: float, env: dict[str, str] | None = None) -> dict:
    d = DaemonProc(tmp_path, env=env).start()
    try:
        record = d.wait_for("serving")
        time.sleep(wait_seconds)
    finally:
        d.kill()
    return record


def test_kills_soon_after_serving_still_count_as_a_crash_loop(tmp_path):
    for _ in range(CRASH_LIMIT):
        serve_then_kill(tmp_path, 0.2)
    with DaemonProc(tmp_path) as d:
        record = d.wait_for("failed")
        assert record["cause"]["kind"] == "crash_loop"
        assert (
            f"before they had served for {DEFAULT_HEALTHY_SERVING_SECONDS:g} s"
            in (record["cause"]["message"])
        )


@pytest.mark.parametrize(
    "window",
    [0.5, pytest.param(DEFAULT_HEALTHY_SERVING_SECONDS, marks=pytest.mark.slow, id="default")],
)
def test_kills_of_a_daemon_that_served_past_the_window_do_not(tmp_path, window):
    env = {"KEYSMITH_HEALTHY_SERVING_SECONDS": f"{window:g}"}
    for _ in range(CRASH_LIMIT + 1):
        record = serve_then_kill(tmp_path, window + 1.5, env)
        assert record["crashes_before"] == 0, record
    with DaemonProc(tmp_path, env=env) as d:
        record = d.wait_for("serving")
        assert record["crashes_before"] == 0 and not record["safe_mode"]
        assert "did not stop cleanly" in record["previous_unclean"]
        code, out, _ = d.health()
        assert code == 0 and out.strip().endswith("the previous run did not stop cleanly")
