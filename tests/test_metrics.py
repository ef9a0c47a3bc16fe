"""`/metrics` on a live daemon: valid exposition (promtool), every family the dashboards need,
and HTTP series labelled by route template so a license id in a path cannot explode them."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from daemon import metrics
from daemon.migrate import run_migrations
from tests import migfiles
from tests.daemon_proc import DaemonProc
from tests.test_lifecycle import metric_value

EXPECTED_FAMILIES = {
    "migrations_self_healed_total": "counter",
    "keysmith_migrations_applied_total": "counter",
    "keysmith_migrations_failed_total": "counter",
    "keysmith_migrations_pending": "gauge",
    "keysmith_schema_version": "gauge",
    "keysmith_migration_run_duration_seconds": "gauge",
    "keysmith_lifecycle_state": "gauge",
    "keysmith_safe_mode": "gauge",
    "keysmith_consecutive_failed_boots": "gauge",
    "keysmith_backup_size_bytes": "gauge",
    "keysmith_backup_duration_seconds": "gauge",
    "keysmith_http_requests_total": "counter",
    "keysmith_http_request_duration_seconds": "histogram",
    "keysmith_validations_total": "counter",
    "keysmith_build_info": "gauge",
}


def type_lines(text: str) -> dict[str, str]:
    return {
        parts[2]: parts[3]
        for parts in (line.split() for line in text.splitlines() if line.startswith("# TYPE "))
    }


@pytest.fixture(scope="module")
def serving(tmp_path_factory):
    with DaemonProc(tmp_path_factory.mktemp("metrics")) as d:
        d.wait_for("serving")
        yield d


def test_every_family_is_declared_with_help_and_type(serving):
    _, text = serving.request("GET", "/metrics")
    types = type_lines(text)
    for name, kind in EXPECTED_FAMILIES.items():
        assert types.get(name) == kind, (name, types.get(name))
        assert f"# HELP {name} " in text
    assert metric_value(text, "keysmith_lifecycle_state", keysmith_lifecycle_state="serving") == 1
    assert metric_value(text, "keysmith_safe_mode") == 0
    assert metric_value(text, "keysmith_schema_version") == serving.status()["schema_version"]
    assert metric_value(text, "keysmith_migrations_applied_total") == len(
        serving.status()["applied"]
    )
    assert metric_value(text, "keysmith_migrations_pending") == 0


def test_promtool_accepts_the_live_output(serving):
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool missing in CI: tests/system-deps.sh should have installed it")
        pytest.skip("promtool not installed (Debian package 'prometheus')")
    serving.request("GET", "/healthz")  # make sure the HTTP series exist
    _, text = serving.request("GET", "/metrics")
    done = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_http_series_use_the_route_template_not_the_raw_path(serving):
    slug = f"no-such-product-{time.monotonic_ns()}"
    for _ in range(3):
        status, _ = serving.request("GET", f"/v1/products/{slug}")
        assert status == 404
    serving.request("GET", f"/definitely/{slug}")
    _, text = serving.request("GET", "/metrics")
    assert slug not in text
    assert (
        metric_value(
            text,
            "keysmith_http_requests_total",
            route="/v1/products/{slug}",
            method="GET",
            status="404",
        )
        == 3
    )
    assert (
        metric_value(
            text, "keysmith_http_requests_total", route="unmatched", method="GET", status="404"
        )
        >= 1
    )
    assert (
        metric_value(
            text,
            "keysmith_http_request_duration_seconds_count",
            route="/v1/products/{slug}",
            method="GET",
            status="404",
        )
        == 3
    )


def test_validations_are_counted_by_result(serving):
    _, before_text = serving.request("GET", "/metrics")
    before = metric_value(before_text, "keysmith_validations_total", result="bad_format") or 0
    status, body = serving.request("POST", "/v1/validate", {"key": "not-a-license-key"})
    assert status == 200 and body["ok"] is False
    _, text = serving.request("GET", "/metrics")
    after = metric_value(text, "keysmith_validations_total", result=body["reason"])
    assert after == (before + 1 if body["reason"] == "bad_format" else 1)


def test_a_migration_outcome_is_exported(tmp_path):
    # The real migrator on a real file; the metrics module turns its Outcome into series.
    migrations = migfiles.write(
        tmp_path / "m",
        {
            "0001_a.sql": "CREATE TABLE a (id INTEGER PRIMARY KEY);\n",
            "0002_b.sql": "CREATE TABLE b (id INTEGER PRIMARY KEY);\n",
        },
    )
    db = tmp_path / "x.db"
    run_migrations(db, migrations, idempotent=frozenset(), daemon_version="test", target=1)
    applied_before = metrics.sample("keysmith_migrations_applied_total")
    outcome = run_migrations(db, migrations, idempotent=frozenset(), daemon_version="test")
    metrics.record_migration_outcome(outcome)
    assert metrics.sample("keysmith_migrations_applied_total") == applied_before + 1
    assert metrics.sample("keysmith_schema_version") == 2
    assert metrics.sample("keysmith_migrations_pending") == 0
    assert metrics.sample("keysmith_migration_run_duration_seconds") == outcome.seconds
    if outcome.backup is not None:
        assert metrics.sample("keysmith_backup_size_bytes") == outcome.backup.size_bytes
