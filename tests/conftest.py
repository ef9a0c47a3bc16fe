"""`slow` tests (long soaks, real-time waits of minutes) run only when a `-m` expression names
them (`-m slow`); `-m "not image"` alone still leaves them out.

Property tests draw the same examples on every run (`suite`), so a run fails only for a change
in the code, never for an input no earlier run tried; `make fuzz` loads `explore`, which draws
new ones. What it finds becomes a named regression test."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

settings.register_profile("suite", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("KEYSMITH_HYPOTHESIS_PROFILE", "suite"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "slow" in config.option.markexpr:
        return  # the caller chose with -m
    skip = pytest.mark.skip(reason="slow: run with -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
