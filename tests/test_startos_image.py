"""The bundled StartOS 0.4 package run in node against the real image, the way StartOS 0.4 runs
it: its own `main` (the daemon in a subcontainer of image main, volume main at /data), its
health function exec'ing `python -m daemon health` in that subcontainer, every action in a
fresh container of the image, and the backup hooks. The effects object and the podman-backed
subcontainers are in tests/startos/.

Variants of the image differ only in migrations/ (as tests/test_image.py does): `crlf` has
0009 re-saved with CRLF line endings (a cosmetic drift the migrator heals), `blocked` has 0010
changed in meaning (refused), `slow` adds two migrations that each take seconds.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.image_tools import (
    REPO,
    build_image,
    missing_tools,
    podman,
    tools_required,
    variant_context,
)
from tests.kit import assert_db_clean, connect, dump
from tests.startos.driver import Package, build_bundle, missing_node

image_tools_present = tools_required(missing_tools() or missing_node())
pytestmark = [
    pytest.mark.image,
    pytest.mark.timeout(900),
]

CATALOGUE: dict[str, dict[str, Any]] = {
    a["id"]: a for a in json.loads((REPO / "startos" / "actions.json").read_text())
}
MIGRATIONS = REPO / "migrations"
NINE = next(MIGRATIONS.glob("0009_*.sql"))
TEN = next(MIGRATIONS.glob("0010_*.sql"))
LATEST = max(int(path.name[:4]) for path in MIGRATIONS.glob("*.sql"))
# Each takes seconds: a recursive CTE of tens of millions of rows, summed into a one-row table.
SLOW_SQL = (
    "CREATE TABLE slow_probe_{n} AS\n"
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 30000000)\n"
    "SELECT sum(i) AS total FROM n;\n"
)
SLOW = {f"{LATEST + k:04d}_slow_step_{k}.sql": SLOW_SQL.format(n=k).encode() for k in (1, 2)}
# The SDK's default: failures inside it are shown as "starting".
GRACE_PERIOD = 10
RESULT_KEYS = {"version", "title", "message", "result"}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    build_bundle()
    root = tmp_path_factory.mktemp("contexts")
    base = variant_context(root / "a", {})
    variants = {
        "crlf": {NINE.name: NINE.read_bytes().replace(b"\n", b"\r\n")},
        "blocked": {TEN.name: TEN.read_bytes() + b"\nCREATE INDEX p_idx ON products (name);\n"},
        "slow": SLOW,
    }
    contexts = {"a": base}
    for variant, files in variants.items():
        contexts[variant] = shutil.copytree(base, root / variant)
        for name, data in files.items():
            (contexts[variant] / "migrations" / name).write_bytes(data)
    tags = {v: f"localhost/keysmith-startos-test-{os.getpid()}:{v}" for v in contexts}
    for variant, context in contexts.items():
        build_image(tags[variant], context)
    yield tags
    podman("rmi", "-f", *tags.values(), check=False)


def form_input(action_id: str, **values: Any) -> dict[str, Any]:
    """A complete form as StartOS submits it: every field, empty ones as null/defaults."""
    fields = CATALOGUE[action_id]["input"] or []
    unknown = set(values) - {f["id"] for f in fields}
    assert not unknown, f"{action_id} has no fields {unknown}"
    return {f["id"]: values.get(f["id"], f["default"]) for f in fields}


def run_action(pkg: Package, action_id: str, **values: Any) -> dict[str, Any]:
    """Run an action through the package; returns its checked version "1" result."""
    has_input = CATALOGUE[action_id]["input"] is not None
    answer = pkg.call("action.run", id=action_id,
                      input=form_input(action_id, **values) if has_input else None)  # fmt: skip
    assert answer["ok"], f"{action_id} failed: {answer['error']}"
    result = answer["result"]
    assert_v1(result, action_id)
    return result


def assert_v1(result: dict[str, Any], where: str) -> None:
    assert set(result) == RESULT_KEYS and result["version"] == "1", (where, result)
    assert isinstance(result["title"], str) and result["title"], (where, result)
    assert result["message"] is None or isinstance(result["message"], str), (where, result)
    shown = result["result"]
    if shown is None:
        return
    members = shown["value"] if shown["type"] == "group" else [shown]
    assert shown["type"] in ("single", "group"), (where, shown)
    for member in members:
        if member["type"] == "group":
            assert_v1({**result, "result": member}, where)
            continue
        assert member["type"] == "single" and isinstance(member["value"], str), (where, member)
        for flag in ("copyable", "qr", "masked"):
            assert isinstance(member[flag], bool), (where, member, flag)


def text_of(result: dict[str, Any]) -> str:
    return json.dumps(result, ensure_ascii=False)


def single(result: dict[str, Any]) -> dict[str, Any]:
    shown = result["result"]
    assert shown and shown["type"] == "single", result
    return shown


def db_dump(data: Path) -> str:
    conn = connect(data / "keysmith.db")
    try:
        assert_db_clean(conn)
        return dump(conn)
    finally:
        conn.close()


def boot(pkg: Package) -> dict[str, Any]:
    pkg.ok("main.start")
    return pkg.wait_health("success", "failure", timeout=120)


# ---- a fresh install -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def installed(images, tmp_path_factory) -> tuple[Package, dict[str, Any]]:
    """A fresh install and its first ready report; the service keeps running for the tests
    below (one daemon for the module)."""
    with Package(tmp_path_factory.mktemp("shop"), images["a"]) as pkg:
        yield pkg, boot(pkg)


@pytest.fixture
def shop(installed) -> Package:
    return installed[0]


def test_fresh_install_reports_starting_then_ready(installed):
    shop, ready = installed
    assert ready["result"] == "success", shop.health()
    assert ready["name"] == "Licensing API"
    assert ready["message"].startswith(f"ready, schema v{LATEST}"), ready
    assert shop.health()[0]["result"] == "starting"
    assert len(shop.containers()) == 1, "the daemon runs in one subcontainer"


def test_no_input_actions_return_version_1_results(shop):
    status = run_action(shop, "migration-status")
    assert "nothing pending" in text_of(status), status
    credentials = single(run_action(shop, "admin-credentials"))
    assert credentials["masked"] and credentials["copyable"] and len(credentials["value"]) >= 16
    history = run_action(shop, "heal-history")
    assert "No self-heal" in text_of(history), history


def test_the_sellers_day_through_the_actions(shop):
    run_action(shop, "create-product", slug="desk-app", name="Desk App", price_sats=50_000)
    run_action(shop, "create-policy", product="desk-app", slug="pro", name="Pro",
               price_sats=80_000, max_machines=3)  # fmt: skip
    issued = run_action(shop, "issue-license", product="desk-app", policy="pro",
                        note="first customer")  # fmt: skip
    key = single(issued)
    assert key["copyable"] and key["value"], issued
    # License ids are UUIDs in the API; the result names the one it issued.
    license_id = UUID.search(text_of(issued)).group(0)
    assert license_id in text_of(run_action(shop, "search-licenses", query="first customer"))
    for action_id in ("suspend-license", "unsuspend-license"):
        run_action(shop, action_id, license_id=license_id)
    run_action(shop, "list-machines", license_id=license_id)
    run_action(shop, "revoke-license", license_id=license_id, reason="refund")
    revoked = run_action(shop, "search-licenses", query="first customer", status="revoked")
    assert license_id in text_of(revoked), revoked
    code = run_action(shop, "create-discount-code", code="LAUNCH", kind="percent", amount=10,
                      product="desk-app")  # fmt: skip
    assert single(code)["value"] == "LAUNCH" and single(code)["copyable"], code
    run_action(shop, "disable-discount-code", code="LAUNCH")
    log = text_of(run_action(shop, "audit-log"))
    assert license_id in log and "revoke" in log and "discount" in log, log


def test_bad_input_is_a_clear_error_and_changes_nothing(shop):
    before = db_dump(shop.data)
    answer = shop.call("action.run", id="issue-license",
                       input=form_input("issue-license", product="no-such-product"))  # fmt: skip
    assert not answer["ok"], answer
    error = answer["error"]
    assert "'no-such-product'" in error and "Nothing was changed" in error, error
    assert "Traceback" not in error and "usage:" not in error, error
    # A value of the wrong type never reaches the daemon: the SDK's form check names the field.
    answer = shop.call("action.run", id="create-product",
                       input=form_input("create-product", slug="x", name="X",
                                        price_sats="a lot"))  # fmt: skip
    assert not answer["ok"] and "price_sats" in answer["error"], answer
    assert db_dump(shop.data) == before


def test_restore_backup_is_only_offered_while_stopped(shop):
    assert CATALOGUE["restore-backup"]["allowedStatuses"] == "only-stopped"


# ---- upgrades ------------------------------------------------------------------------------


def installed_then_stopped(images, folder: Path) -> Path:
    """Image A's first boot through the package, then a clean stop: the volume to upgrade."""
    with Package(folder, images["a"]) as pkg:
        assert boot(pkg)["result"] == "success", pkg.health()
        pkg.ok("main.stop")
        assert not pkg.containers()
    return folder


def test_clean_stop_within_the_sigterm_timeout(images, tmp_path):
    with Package(tmp_path, images["a"]) as pkg:
        assert boot(pkg)["result"] == "success"
        took = pkg.ok("main.stop")["ms"]
        assert not pkg.containers()
        assert "stopped cleanly" in pkg.logs(), pkg.logs()[-2000:]
    assert took < 30_000, took


def test_a_cosmetic_drift_heals_and_shows_in_the_heal_history(images, tmp_path):
    folder = installed_then_stopped(images, tmp_path)
    with Package(folder, images["crlf"]) as pkg:
        ready = boot(pkg)
        assert ready["result"] == "success" and "1 self-heal" in ready["message"], pkg.health()
        history = run_action(pkg, "heal-history")
        text = text_of(history)
        assert "migration 9" in text, history
        pkg.ok("main.stop")


def test_a_blocked_upgrade_fails_with_cause_and_remedy_and_stays_up(images, tmp_path):
    folder = installed_then_stopped(images, tmp_path)
    before = db_dump(folder / "volumes" / "main")
    with Package(folder, images["blocked"]) as pkg:
        pkg.ok("main.start")
        failure = pkg.wait_health("failure", timeout=GRACE_PERIOD + 60)
        message = failure["message"]
        assert "migration 10" in message and "To fix:" in message, message
        assert "intact" in message, message
        # Inside the grace period the same failure was shown as starting, never as a crash.
        assert all(e["result"] in ("starting", "failure") for e in pkg.health()), pkg.health()
        assert pkg.containers(), "the daemon must stay up in safe mode"
        assert "daemon crashed" not in json.dumps(pkg.health())
        status = run_action(pkg, "migration-status")
        assert "blocked" in text_of(status).lower(), status
        pkg.ok("main.stop")
    assert db_dump(folder / "volumes" / "main") == before


def test_a_slow_migration_reports_loading_with_moving_progress(images, tmp_path):
    with Package(tmp_path, images["slow"]) as pkg:
        pkg.ok("main.start")
        ready = pkg.wait_health("success", timeout=300)
        assert ready["message"].startswith(f"ready, schema v{LATEST + 2}"), ready
        loading = [e["message"] for e in pkg.health() if e["result"] == "loading"]
        assert loading, pkg.health()
        assert all(m.startswith("Upgrading the database") for m in loading), loading
        steps = {m for m in loading if "step" in m}
        assert len(steps) >= 2, f"the progress message never moved: {loading}"
        pkg.ok("main.stop")


# ---- backups -------------------------------------------------------------------------------


class Writer(threading.Thread):
    """Issues licenses through the admin API until stopped, noting when each was committed."""

    def __init__(self, url: str, key: str) -> None:
        super().__init__(daemon=True)
        self.url, self.key = url, key
        self.committed: list[tuple[float, str]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            body = json.dumps({"product_slug": "load", "note": f"n{len(self.committed)}"})
            request = urllib.request.Request(
                f"{self.url}/v1/admin/licenses", data=body.encode(), method="POST",
                headers={"Authorization": f"Bearer {self.key}",
                         "Content-Type": "application/json"},
            )  # fmt: skip
            with urllib.request.urlopen(request, timeout=10) as response:
                answer = json.loads(response.read())
            self.committed.append((time.monotonic(), str(answer["license_id"])))


@pytest.mark.skipif(shutil.which("rsync") is None, reason="the SDK's backups run rsync")
def test_backup_under_write_load_restores_every_committed_row(images, tmp_path):
    with Package(tmp_path / "a", images["a"]) as pkg:
        assert boot(pkg)["result"] == "success"
        key = single(run_action(pkg, "admin-credentials"))["value"]
        run_action(pkg, "create-product", slug="load", name="Load", price_sats=0)
        writer = Writer(f"http://127.0.0.1:{pkg.port}", key)
        writer.start()
        time.sleep(2)
        started = time.monotonic()
        pkg.ok("backup.create")
        time.sleep(1)
        writer.stop.set()
        writer.join(timeout=30)
        pkg.ok("main.stop")
    before = {lid for t, lid in writer.committed if t < started}
    assert len(before) > 5, "the load never got going"
    saved = tmp_path / "a" / "backup" / "volumes" / "main"
    # The live files were never copied; the consistent snapshot was.
    for live in ("keysmith.db", "keysmith.db-wal", "keysmith.db-shm", "keysmith-status.json"):
        assert not (saved / live).exists(), live
    # The locks are held by live processes; a restore must start without them.
    assert not list(saved.glob("*.migrate-lock"))
    assert not list(saved.glob("*.users-lock"))
    assert (saved / "backup-snapshot" / "keysmith.db").is_file()

    # Restore on a new server: the backup target is all there is.
    shutil.copytree(tmp_path / "a" / "backup", tmp_path / "b" / "backup")
    with Package(tmp_path / "b", images["a"]) as pkg:
        init = pkg.ok("init", kind="restore")
        assert init["dataVersion"] == "0.2.0:0"
        assert boot(pkg)["result"] == "success", pkg.health()
        pkg.ok("main.stop")
    conn = sqlite3.connect(tmp_path / "b" / "volumes" / "main" / "keysmith.db")
    try:
        assert_db_clean(conn)
        restored = {str(row[0]) for row in conn.execute("SELECT id FROM licenses")}
    finally:
        conn.close()
    assert before <= restored, f"lost committed rows: {sorted(before - restored)[:5]}"
