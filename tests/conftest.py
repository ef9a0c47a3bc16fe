"""`slow` tests (long soaks, real-time waits of minutes) run only when a `-m` expression names
them (`-m slow`); `-m "not image"` alone still leaves them out."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "slow" in config.option.markexpr:
        return  # the caller chose with -m
    skip = pytest.mark.skip(reason="slow: run with -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
