"""Downgrades on StartOS 0.4, with the bundled package in node against the real image: the
current version's `down` migration (startos/versions) reverts the schema to what the older
version knows through `migrate revert`, keeping every row written since the upgrade, or
refuses with the reason before anything changes.

Two variants of the image, differing only in migrations/ (as tests/test_startos_image.py
builds them): `pair` ships one more migration as sqlx's reversible pair, `plain` ships it as a
plain (irreversible) `.sql` file, `changed` has 0010 changed in meaning (a refused upgrade the
operator overrides with the action `accept-migration`). Image `a` is the shipped folder: what
the older version runs.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import urllib.request
from pathlib import Path

import pytest

from tests.image_tools import build_image, missing_tools, podman, tools_required, variant_context
from tests.kit import dump, latest_version
from tests.startos.driver import Package, build_bundle, missing_node
from tests.test_startos_image import boot, run_action, single, text_of
from tests.test_startos_versions import schema_versions

image_tools_present = tools_required(missing_tools() or missing_node())
pytestmark = [
    pytest.mark.image,
    pytest.mark.timeout(900),
]

LATEST = latest_version()
NEXT = f"{LATEST + 1:04d}_license_support_notes"
UP = (
    "CREATE TABLE license_support_notes (\n"
    "    id INTEGER PRIMARY KEY,\n"
    "    license_id TEXT NOT NULL REFERENCES licenses(id) ON DELETE CASCADE,\n"
    "    note TEXT NOT NULL\n"
    ");\n"
)
DOWN = "DROP TABLE license_support_notes;\n"
OLDER = "0.1.0:0"
CURRENT = "0.2.0:0"


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    build_bundle()
    root = tmp_path_factory.mktemp("contexts")
    base = variant_context(root / "a", {})
    files = {
        "pair": {f"{NEXT}.up.sql": UP, f"{NEXT}.down.sql": DOWN},
        "plain": {f"{NEXT}.sql": UP},
    }
    ten = next((base / "migrations").glob("0010_*.sql"))
    files["changed"] = {
        ten.name: ten.read_text() + "CREATE INDEX products_by_name ON products (name);\n"
    }
    contexts = {"a": base}
    for variant, extra in files.items():
        contexts[variant] = shutil.copytree(base, root / variant)
        for name, text in extra.items():
            (contexts[variant] / "migrations" / name).write_text(text)
    tags = {v: f"localhost/keysmith-downgrade-test-{id(root)}:{v}" for v in contexts}
    for variant, context in contexts.items():
        build_image(tags[variant], context)
    yield tags
    podman("rmi", "-f", *tags.values(), check=False)


def volume(folder: Path) -> Path:
    return folder / "volumes" / "main" / "keysmith.db"


def schema_of(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT max(version) FROM _sqlx_migrations").fetchone()[0]
    finally:
        conn.close()


def api(port: int, path: str, body: dict, key: str | None = None) -> dict:
    """One POST to the serving daemon's API (the admin endpoints with the admin key)."""
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(), headers=headers,
        method="POST",
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def upgraded_with_licenses(image: str, folder: Path, count: int) -> list[str]:
    """Install the newer package, serve, issue `count` licenses through the admin API, stop.
    Returns their keys."""
    with Package(folder, image) as pkg:
        assert pkg.ok("init", kind="install")["dataVersion"] == CURRENT
        assert boot(pkg)["result"] == "success", pkg.health()
        admin = single(run_action(pkg, "admin-credentials"))["value"]
        api(pkg.port, "/v1/admin/products", {"slug": "desk", "name": "Desk", "price_sats": 1000},
            admin)  # fmt: skip
        api(pkg.port, "/v1/admin/policies", {"product_slug": "desk", "slug": "std",
            "name": "Std", "max_machines": 1, "is_default": True}, admin)  # fmt: skip
        keys = [api(pkg.port, "/v1/admin/licenses", {"product_slug": "desk"}, admin)
                ["license_key"] for _ in range(count)]  # fmt: skip
        pkg.ok("main.stop")
    assert schema_of(volume(folder)) == LATEST + 1
    return keys


def test_a_downgrade_keeps_every_row_written_since_the_upgrade(images, tmp_path):
    keys = upgraded_with_licenses(images["pair"], tmp_path, 5)
    with Package(tmp_path, images["pair"], data_version=CURRENT) as pkg:
        # StartOS installing the older version: the installed package's uninit, target older.
        # The SDK records the range it migrated into (every version below the current one).
        left_at = pkg.ok("uninit", target=OLDER)["dataVersion"]
        assert left_at == f"<{CURRENT}", left_at
    # Reverted to what the older version knows (and the older image applies the rest of its
    # own migrations again at boot, if it has more).
    assert schema_of(volume(tmp_path)) == schema_versions()[OLDER]
    with Package(tmp_path, images["a"], data_version=left_at) as pkg:
        assert pkg.ok("init", kind="update")["dataVersion"] == CURRENT
        ready = boot(pkg)
        assert ready["result"] == "success", pkg.health()
        assert ready["message"].startswith(f"ready, schema v{LATEST}"), ready
        for key in keys:
            assert api(pkg.port, "/v1/validate", {"key": key})["ok"] is True
        history = text_of(run_action(pkg, "heal-history"))
        assert f"migration {LATEST + 1}" in history and "down file" in history, history
        pkg.ok("main.stop")


def test_a_downgrade_past_an_irreversible_migration_is_refused_and_changes_nothing(
    images, tmp_path
):
    upgraded_with_licenses(images["plain"], tmp_path, 2)
    conn = sqlite3.connect(volume(tmp_path))
    before = dump(conn, include_ledger=True)
    conn.close()
    with Package(tmp_path, images["plain"], data_version=CURRENT) as pkg:
        answer = pkg.call("uninit", target=OLDER)
        assert not answer["ok"], answer
        message = answer["error"]
        assert re.search(rf"Refused to revert the database: migration {LATEST + 1} ", message)
        assert "plain migration without a down file" in message, message
        assert "Nothing was changed" in message and "To fix:" in message, message
        assert "Traceback" not in message, message
        print(f"\nthe operator sees: {message}")
        # StartOS keeps the newer version: its data version did not move.
        assert pkg.ok("data.version")["dataVersion"] == CURRENT
    conn = sqlite3.connect(volume(tmp_path))
    assert dump(conn, include_ledger=True) == before
    conn.close()


def test_the_operator_overrides_a_deliberate_change_through_the_action(images, tmp_path):
    with Package(tmp_path, images["a"]) as pkg:
        assert boot(pkg)["result"] == "success", pkg.health()
        pkg.ok("main.stop")
    with Package(tmp_path, images["changed"]) as pkg:
        pkg.ok("main.start")
        refused = pkg.wait_health("failure", timeout=120)["message"]
        assert "migration 10" in refused and "Accept a changed migration" in refused, refused
        print(f"\nthe operator sees (refused upgrade): {refused}")
        pkg.ok("main.stop")
        answer = pkg.call("action.run", id="accept-migration",
                          input={"version": 10, "confirm": False})  # fmt: skip
        assert not answer["ok"] and "Nothing was changed" in answer["error"], answer
        accepted = run_action(pkg, "accept-migration", version=10, confirm=True)
        print(f"the operator sees (override): {accepted['message']} {single(accepted)['value']}")
        assert "no SQL ran" in accepted["message"], accepted
        assert "StartOS operator" in single(accepted)["value"], accepted
        after = len(pkg.health())
        pkg.ok("main.start")
        ready = pkg.wait_health("success", "failure", timeout=120, after=after)
        assert ready["result"] == "success", pkg.health()
        history = text_of(run_action(pkg, "heal-history"))
        assert "accepted its changed text by the operator" in history, history
        pkg.ok("main.stop")
