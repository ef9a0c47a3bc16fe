"""The real image, built with buildah and run with podman the way StartOS runs it, across real
upgrades on one data folder that outlives every image.

The story these tell: a Rust licensing daemon once shipped an upgrade whose migration 9 had
different bytes than the copy recorded at first apply; it refused to boot, StartOS restarted it
every 15 s forever, and operators had to delete ledger rows by hand over SSH. Here image A
creates a shop, then images built from the same tree with altered migration files boot on a copy
of its data folder:

- B: 0009 re-saved with CRLF line endings, 0010 with a BOM. Both are re-stamped with proof,
  two WARN lines, `migrations_self_healed_total` = 2, every row still there.
- B': 0009 changed in meaning (it is on the idempotent allowlist): re-run after a backup, data
  intact; then the restore action puts the pre-upgrade database back.
- C: 0010 changed in meaning (additive, never re-run): refused before changing anything; the
  container stays up instead of crash-looping, and the health check gives cause and remedy.

The base image is built once without a registry (debootstrap) and cached under
/var/tmp/keysmith-image-cache; the variants differ only in their last layer.
"""

from __future__ import annotations

import json
import re
import shutil
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.image_tools import (
    MANIFEST,
    REPO,
    Container,
    build_image,
    image_layers,
    metric_samples,
    missing_tools,
    podman,
    run_action,
    tools_required,
    variant_context,
)
from tests.kit import assert_db_clean, connect, dump
from tests.seed import count_rows

image_tools_present = tools_required(missing_tools())
pytestmark = [
    pytest.mark.image,
    pytest.mark.timeout(1200),
]

MIGRATIONS = REPO / "migrations"
NINE = next(MIGRATIONS.glob("0009_*.sql"))
TEN = next(MIGRATIONS.glob("0010_*.sql"))
LATEST = max(int(path.name[:4]) for path in MIGRATIONS.glob("*.sql"))
SIGTERM_TIMEOUT = int(str(MANIFEST["main"]["sigterm-timeout"]).rstrip("s"))
# Exit codes StartOS treats as a clean exit of main.
CLEAN_EXITS = (0, 143)
# A real statement, harmless to run twice, so the allowlisted re-run of 0009 leaves evidence.
NINE_EXTRA = b"\nCREATE INDEX IF NOT EXISTS discount_codes_note_idx ON discount_codes (note);\n"
# An additive change to 0010: a different meaning that no proof can excuse.
TEN_EXTRA = b"\nCREATE INDEX products_name_idx ON products (name);\n"
ADMIN_PREFIX = "/v1/admin"


def tag(variant: str) -> str:
    return f"localhost/keysmith-test:{variant}"


@pytest.fixture(scope="module")
def contexts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Build contexts: A, a snapshot of the tree (others may be editing it meanwhile), and the
    variants B, B' and C, copies of that snapshot with altered migration files."""
    root = tmp_path_factory.mktemp("contexts")
    nine, ten = NINE.read_bytes(), TEN.read_bytes()
    assert b"\r\n" not in nine and not ten.startswith(b"\xef\xbb\xbf"), "edit the variants"
    a = variant_context(root / "a", {})
    variants = {
        "b": {NINE.name: nine.replace(b"\n", b"\r\n"), TEN.name: b"\xef\xbb\xbf" + ten},
        "bprime": {NINE.name: nine + NINE_EXTRA},
        "c": {TEN.name: ten + TEN_EXTRA},
    }
    built = {"a": a}
    for variant, files in variants.items():
        built[variant] = shutil.copytree(a, root / variant)
        for name, data in files.items():
            (built[variant] / "migrations" / name).write_bytes(data)
    return built


@pytest.fixture(scope="module")
def images(contexts: dict[str, Path]) -> dict[str, str]:
    for variant, context in contexts.items():
        build_image(tag(variant), context)
    # The variants change only migrations/, the last layer: every other layer is shared with A,
    # which is what keeps a variant build to seconds.
    layers = {variant: image_layers(tag(variant)) for variant in contexts}
    for variant in ("b", "bprime", "c"):
        assert layers[variant][:-1] == layers["a"][:-1], f"{variant} rebuilt more than migrations/"
        assert layers[variant][-1] != layers["a"][-1]
    return {variant: tag(variant) for variant in contexts}


@dataclass
class Shop:
    data_dir: Path
    admin_key: str
    dump: str
    rows: dict[str, int]


def db_state(data_dir: Path) -> tuple[str, dict[str, int]]:
    conn = connect(data_dir / "keysmith.db")
    try:
        assert_db_clean(conn)
        return dump(conn), count_rows(conn)
    finally:
        conn.close()


def copy_of(shop: Shop, folder: Path) -> Path:
    shutil.copytree(shop.data_dir, folder)
    return folder


def action_result(image: str, data_dir: Path, action_id: str) -> dict:
    done = run_action(image, data_dir, action_id)
    assert done.returncode == 0, f"action {action_id} failed: {done.stderr}"
    result = json.loads(done.stdout)
    assert result["version"] == "0" and result["message"], result
    return result


def create_shop_data(c: Container, admin_key: str) -> None:
    """Products, a policy, licenses, a discount code and its redemption, through the API."""
    auth = {"Authorization": f"Bearer {admin_key}"}

    def admin(method: str, path: str, body: dict | None = None) -> dict:
        status, answer = c.request(method, ADMIN_PREFIX + path, body, auth)
        assert status in (200, 201), f"{method} {path}: {status} {answer}"
        return answer

    for slug, price in (("desk-app", 50_000), ("cli-tool", 0)):
        admin("POST", "/products", {"slug": slug, "name": slug.title(), "price_sats": price})
    admin("POST", "/policies", {"product_slug": "desk-app", "slug": "pro", "name": "Pro",
                                "max_machines": 3, "price_sats_override": 80_000})  # fmt: skip
    issued = [
        admin("POST", "/licenses", {"product_slug": "desk-app", "note": note})
        for note in ("first customer", "second customer", "to revoke")
    ]
    admin("POST", f"/licenses/{issued[-1]['license_id']}/revoke", {"reason": "refund"})
    status, answer = c.request(
        "POST", "/v1/machines/activate",
        {"key": issued[0]["license_key"], "fingerprint": "workstation-1", "hostname": "ana-pc"},
    )  # fmt: skip
    assert status == 200, f"activate: {status} {answer}"
    admin("POST", "/discount-codes", {"code": "LAUNCH-FREE", "kind": "free_license",
                                      "product_slug": "cli-tool"})  # fmt: skip
    status, answer = c.request(
        "POST", "/v1/redeem",
        {"product": "cli-tool", "code": "LAUNCH-FREE", "buyer_email": "ana@example.com"},
    )  # fmt: skip
    assert status == 200, f"redeem: {status} {answer}"


@pytest.fixture(scope="module")
def shop(images: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Shop:
    """Image A's first boot on an empty data folder, a shop created through the API, a clean
    stop: the data folder every upgrade below starts from (each on its own copy)."""
    data_dir = tmp_path_factory.mktemp("shop") / "data"
    data_dir.mkdir()
    with Container(images["a"], data_dir) as c:
        c.wait_health((0,))
        key = action_result(images["a"], data_dir, "admin-credentials")["value"]
        create_shop_data(c, key)
        c.stop()
        assert c.exit_code in CLEAN_EXITS
    state, rows = db_state(data_dir)
    assert rows["licenses"] >= 4 and rows["discount_redemptions"] == 1, rows
    assert rows["machines"] == 1 and rows["policies"] >= 1, rows
    return Shop(data_dir, key, state, rows)


def test_image_boots_on_empty_data_serves_and_stops_cleanly(images, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with Container(images["a"], data_dir) as c:
        _, out, err = c.wait_health((0,))
        assert "ready" in out, (out, err)
        # tini is PID 1, so SIGTERM reaches the daemon through it.
        assert "tini" in c.exec("cat", "/proc/1/cmdline").stdout
        # Every command the manifest runs in this image exists in it.
        for command in {"python", "echo", MANIFEST["main"]["entrypoint"]}:
            assert c.exec("sh", "-c", f"command -v {command}").returncode == 0, command
        # No build tools or package caches left in the final image.
        for tool in ("gcc", "cc", "make", "pip", "pip3"):
            assert c.exec("sh", "-c", f"command -v {tool}").returncode != 0, tool
        assert c.exec("ls", "-A", "/var/lib/apt/lists").stdout.strip() == ""
        status, body = c.request("GET", "/healthz")
        assert status == 200 and body["state"] == "serving", body
        # Arguments to the image replace `serve`: an operator's `podman run IMAGE migrate status`.
        report = podman(
            "run", "--rm", "--network", "none", "-v", f"{data_dir}:/data", images["a"],
            "migrate", "status", check=False,
        )  # fmt: skip
        assert report.returncode == 0 and f"{LATEST}/installed" in report.stdout, report
        status, index = c.request("GET", "/")
        assert status == 200 and index["service"] == "keysmith", index
        status, products = c.request("GET", "/v1/products")
        assert status == 200, products
        key = action_result(images["a"], data_dir, "admin-credentials")["value"]
        status, _ = c.request("GET", f"{ADMIN_PREFIX}/products",
                              headers={"Authorization": f"Bearer {key}"})  # fmt: skip
        assert status == 200
        status, _ = c.request("GET", f"{ADMIN_PREFIX}/products",
                              headers={"Authorization": "Bearer wrong-key-0123456789"})  # fmt: skip
        assert status == 403  # Keysat: a wrong key is forbidden (401 only when missing)
        took = c.stop()
        assert c.exit_code in CLEAN_EXITS, f"exit {c.exit_code}; logs:\n{c.logs()}"
        assert took < SIGTERM_TIMEOUT, f"stop took {took:.1f} s: SIGTERM did not reach the daemon"
        assert "stopped cleanly" in c.logs()
        assert key not in c.logs(), "the admin key must never be logged"
    status = (data_dir / "keysmith-status.json").read_text()
    assert '"clean_stop": true' in status
    # The properties page: `compat properties` reads start9/stats.yaml, which the daemon writes.
    stats = yaml.safe_load((data_dir / "start9" / "stats.yaml").read_text())
    assert stats["version"] == 2
    for label, entry in stats["data"].items():
        assert entry["type"] == "string" and isinstance(entry["value"], str), label
        assert {"description", "copyable", "qr", "masked"} <= set(entry), label
    assert stats["data"]["Admin API key"] == stats["data"]["Admin API key"] | {
        "value": key,
        "masked": True,
    }


def test_upgrade_heals_crlf_and_bom_drift_with_every_row_kept(images, shop, tmp_path):
    data_dir = copy_of(shop, tmp_path / "data")
    with Container(images["b"], data_dir) as c:
        _, out, err = c.wait_health((0,))
        assert "2 self-heals" in out, (out, err)
        logs = c.logs()
        for version in (9, 10):
            assert re.search(rf"WARN keysmith\.migrate .*version={version}\b", logs), logs
        _, text = c.request("GET", "/metrics")
        heals = metric_samples(text, "migrations_self_healed_total")
        assert sum(value for _, value in heals) == 2, heals
        assert {labels["action"] for labels, value in heals if value} == {"restamp"}
        # Re-stamps run no SQL, so no backup was needed.
        assert not list((data_dir / "backups").glob("*.sqlite3"))
        c.stop()
        assert c.exit_code in CLEAN_EXITS
    state, rows = db_state(data_dir)
    assert rows == shop.rows
    assert state == shop.dump, "a re-stamp must not change any schema or row"


@pytest.fixture(scope="module")
def incident(images, shop, tmp_path_factory) -> tuple[Path, str, str]:
    """Image B' (0009 changed in meaning) booted on a copy of the shop, then stopped."""
    data_dir = copy_of(shop, tmp_path_factory.mktemp("incident") / "data")
    with Container(images["bprime"], data_dir) as c:
        _, out, err = c.wait_health((0,))
        _, metrics = c.request("GET", "/metrics")
        logs = c.logs()
        c.stop()
        assert c.exit_code in CLEAN_EXITS
    return data_dir, out + err + logs, metrics


def test_original_incident_reruns_allowlisted_0009_after_a_backup(shop, incident):
    data_dir, output, metrics = incident
    assert re.search(r"WARN keysmith\.migrate .*version=9\b.*action=rerun", output), output
    heals = metric_samples(metrics, "migrations_self_healed_total")
    assert [(labels["version"], labels["action"]) for labels, v in heals if v] == [("9", "rerun")]
    backups = list((data_dir / "backups").glob("*-pre-v*.sqlite3"))
    assert len(backups) == 1, backups
    conn = connect(backups[0])
    try:
        assert dump(conn) == shop.dump, "the backup is the database as it was before"
    finally:
        conn.close()
    state, rows = db_state(data_dir)
    assert rows == shop.rows, "the re-run kept every row"
    assert "discount_codes_note_idx" in state, "the changed 0009 really ran"
    without_new_index = "\n".join(
        line for line in state.splitlines() if "discount_codes_note_idx" not in line
    )
    assert without_new_index == shop.dump


def test_restore_action_brings_back_the_pre_upgrade_database(images, shop, incident):
    data_dir, _, _ = incident
    result = action_result(images["bprime"], data_dir, "restore-backup")
    assert "Restored the backup" in result["message"]
    state, rows = db_state(data_dir)
    assert state == shop.dump and rows == shop.rows
    assert "discount_codes_note_idx" not in state


def test_blocked_upgrade_stays_up_and_changes_nothing(images, shop, tmp_path):
    data_dir = copy_of(shop, tmp_path / "data")
    with Container(images["c"], data_dir) as c:
        code, out, err = c.wait_health((1,))
        # No crash loop: after 30 s the same container is still up, still explaining itself.
        time.sleep(30)
        assert c.running(), f"the container exited; logs:\n{c.logs()}"
        code, out, err = c.health()
        assert code == 1, (code, out, err)
        assert "migration 10" in err and "To fix:" in err, err
        assert "previous version" in err and "intact" in err, err
        status, body = c.request("GET", "/v1/products")
        assert status == 503, body
        status, _ = c.request("GET", "/healthz")
        assert status == 503
        assert re.search(r"ERROR keysmith\.", c.logs()), c.logs()
        # The operator's first look: the migration-status action names the blocker too.
        result = action_result(images["c"], data_dir, "migration-status")
        assert result["message"].startswith("Upgrade blocked at migration 10"), result
        c.stop()
        assert c.exit_code in CLEAN_EXITS
    state, rows = db_state(data_dir)
    assert state == shop.dump and rows == shop.rows
    assert not list((data_dir / "backups").glob("*.sqlite3")), "nothing ran, nothing backed up"


def test_architecture_tarball_is_tagged_as_start_sdk_expects(images, contexts, tmp_path):
    # `make legacy-x86` writes this file; start-sdk pack takes it as is, and start-sdk verify wants
    # the tag start9/<id>/main:<version> (podman alone would write localhost/start9/...).
    wanted = f"start9/{MANIFEST['id']}/main:{MANIFEST['version']}"
    archive = tmp_path / "x86_64.tar"
    build_image(wanted, contexts["a"], output=archive)
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        repositories = json.load(tar.extractfile("repositories"))
    assert [entry["RepoTags"] for entry in manifest] == [[wanted]]
    name, version = wanted.rsplit(":", 1)
    assert list(repositories) == [name] and list(repositories[name]) == [version]
    loaded = podman("load", "-q", "-i", str(archive)).stdout
    assert wanted in loaded
    assert image_layers(f"localhost/{wanted}") == image_layers(images["a"])
