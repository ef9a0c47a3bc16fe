"""A short crash-injection run in CI (the soak: `python -m tests.crash_harness --kills 500`)."""

from __future__ import annotations

import random

import pytest

from tests import crash_harness


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    return crash_harness.build(tmp_path_factory.mktemp("crash"))


def test_sigkill_during_migrate_run_loses_nothing(scenario):
    rng = random.Random(20261125)
    for _ in range(20):
        crash_harness.kill_once(scenario, "migrate", rng)
    assert sum(scenario.tally.values()) >= 20


def test_sigkill_during_serve_boot_loses_nothing(scenario):
    rng = random.Random(7)
    for _ in range(6):
        crash_harness.kill_once(scenario, "serve", rng)
