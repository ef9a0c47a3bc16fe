"""Downgrades on StartOS 0.4 as StartOS performs them: the target of the installed package's
`uninit` is the host's own choice (tests/startos/host.py, ported from start-core's
service_map.rs), computed from the two manifests and the data version, never picked by hand.

- Back to Keysmith 0.1.0 (the 0.3.5-era release, converted with `canMigrateFrom` = any): the
  host hands uninit the data version itself, so the version graph's `down` never runs. The
  owner prepares the downgrade with the action 'Prepare a downgrade to Keysmith 0.1' first;
  then 0.1.0's own daemon (from git history) serves every license as before.
- Between native versions (a future 0.3.0 back to 0.2.0): 0.2.0's `canMigrateFrom` admits no
  newer data, so the host falls to 0.3.0's `canMigrateTo` and its `down` reverts the schema.

Image variants, differing only in migrations/ (as tests/test_startos_image.py builds them):
`pair` ships one more migration as sqlx's reversible pair (what 0.3.0 runs), `plain` ships it
as a plain (irreversible) `.sql` file, `changed` has 0010 changed in meaning (a refused upgrade
the operator overrides with the action `accept-migration`). Image `a` is the shipped folder:
what 0.2.0 runs.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import urllib.request
from pathlib import Path

import pytest

from daemon import downgrade
from tests.daemon_proc import DaemonProc
from tests.image_tools import build_image, missing_tools, podman, tools_required, variant_context
from tests.kit import dump, latest_version, schema_of
from tests.startos.driver import BUNDLE, Package, build_bundle, missing_node
from tests.startos.host import (
    future_bundle,
    git_show,
    last_commit_of_release,
    manifest_of,
    release_tree,
    uninit_target,
    v1_manifest,
)
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
FUTURE = "0.3.0:0"


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


@pytest.fixture(scope="module")
def future(images, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundle of a future native release 0.3.0:0 whose daemon knows one more migration."""
    return future_bundle(tmp_path_factory.mktemp("future"), LATEST + 1)


def volume(folder: Path) -> Path:
    return folder / "volumes" / "main" / "keysmith.db"


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


def validations(port: int, keys: list[str]) -> dict[str, dict]:
    return {key: api(port, "/v1/validate", {"key": key}) for key in keys}


def served_licenses(
    image: str, folder: Path, count: int, bundle: Path = BUNDLE, version: str = CURRENT
) -> dict[str, dict]:
    """Install `bundle` (data version `version`), serve, issue `count` licenses through the
    admin API, validate each, stop. Returns each key's validation answer."""
    with Package(folder, image, bundle=bundle) as pkg:
        assert pkg.ok("init", kind="install")["dataVersion"] == version
        assert boot(pkg)["result"] == "success", pkg.health()
        admin = single(run_action(pkg, "admin-credentials"))["value"]
        api(pkg.port, "/v1/admin/products", {"slug": "desk", "name": "Desk", "price_sats": 1000},
            admin)  # fmt: skip
        api(pkg.port, "/v1/admin/policies", {"product_slug": "desk", "slug": "std",
            "name": "Std", "max_machines": 1, "is_default": True}, admin)  # fmt: skip
        keys = [api(pkg.port, "/v1/admin/licenses", {"product_slug": "desk"}, admin)
                ["license_key"] for _ in range(count)]  # fmt: skip
        answers = validations(pkg.port, keys)
        pkg.ok("main.stop")
    assert all(a["ok"] is True for a in answers.values()), answers
    return answers


def assert_same_answers(before: dict[str, dict], after: dict[str, dict]) -> None:
    """Every key answers valid again, with the same value for every field both versions
    return (the older API returns fewer)."""
    for key, was in before.items():
        now = after[key]
        assert now["ok"] is True, (key, now)
        shared = sorted(set(was) & set(now))
        assert {k: now[k] for k in shared} == {k: was[k] for k in shared}, (key, was, now)


def serves_every_license_again(pkg: Package, before: dict[str, dict]) -> None:
    """This version boots at the newest schema and answers every license as before."""
    ready = boot(pkg)
    assert ready["result"] == "success", pkg.health()
    assert ready["message"].startswith(f"ready, schema v{LATEST}"), ready
    assert_same_answers(before, validations(pkg.port, list(before)))


def test_the_downgrade_to_0_1_0_that_startos_performs_keeps_every_license(images, tmp_path):
    before = served_licenses(images["a"], tmp_path, 5)
    assert schema_of(volume(tmp_path)) == LATEST
    release = last_commit_of_release("0.1.0")
    with Package(tmp_path, images["a"], data_version=CURRENT) as pkg:
        # 1. The owner prepares the downgrade (the service is stopped).
        prepared = run_action(pkg, "prepare-downgrade")
        print(f"\nthe operator sees (prepare): {prepared['message']}\n{text_of(prepared)}")
        assert f"schema v{schema_versions()[OLDER]}" in prepared["message"], prepared
        assert "API keys" in text_of(prepared) and "backups/" in text_of(prepared), prepared
        assert schema_of(volume(tmp_path)) == schema_versions()[OLDER]
        # 2. Started again before the downgrade, this version leaves the database alone and
        # says what to do: no silent re-upgrade undoes the preparation.
        pkg.ok("main.start")
        held = pkg.wait_health("failure", timeout=120)["message"]
        print(f"the operator sees (started while prepared): {held}")
        assert "prepared for a downgrade to Keysmith 0.1.0" in held, held
        assert "install Keysmith 0.1.0 now" in held and downgrade.CANCEL_NAME in held, held
        pkg.ok("main.stop")
        assert schema_of(volume(tmp_path)) == schema_versions()[OLDER]
        # 3. StartOS installs 0.1.0 over it, running this package's uninit with its own target.
        data_version = pkg.ok("data.version")["dataVersion"]
        older = v1_manifest(git_show(release, "manifest.yaml"))
        target = uninit_target(pkg, manifest_of(BUNDLE), older, data_version)
        assert target == data_version, "a 0.3.5 package admits any data version"
        pkg.ok("uninit", target=target)
    # 4. Keysmith 0.1.0's own daemon serves on the result, every license as before.
    tree = release_tree(release, tmp_path / "release-0.1.0")
    with DaemonProc(
        tmp_path / "run-0.1.0", db_path=volume(tmp_path), migrations_dir=tree / "migrations",
        env={"PYTHONPATH": str(tree)},
    ) as old:  # fmt: skip
        status = old.status()
        assert status["state"] == "serving", f"{status}\n{old.log_text()}"
        assert status["daemon_version"] == "0.1.0", status
        assert_same_answers(before, validations(old.port, list(before)))
    # 5. Installing this version again later is an upgrade: the preparation no longer holds.
    with Package(tmp_path, images["a"], data_version=OLDER) as pkg:
        assert pkg.ok("init", kind="update")["dataVersion"] == CURRENT
        serves_every_license_again(pkg, before)
        pkg.ok("main.stop")


def test_a_prepared_downgrade_can_be_cancelled_and_this_version_upgrades_again(images, tmp_path):
    before = served_licenses(images["a"], tmp_path, 2)
    with Package(tmp_path, images["a"], data_version=CURRENT) as pkg:
        run_action(pkg, "prepare-downgrade")
        cancelled = run_action(pkg, "cancel-downgrade")
        assert "upgrades the database again" in cancelled["message"], cancelled
        serves_every_license_again(pkg, before)
        pkg.ok("main.stop")


def test_a_downgrade_between_native_versions_runs_the_newer_versions_down(images, future, tmp_path):
    before = served_licenses(images["pair"], tmp_path, 5, bundle=future, version=FUTURE)
    assert schema_of(volume(tmp_path)) == LATEST + 1
    with Package(tmp_path, images["pair"], data_version=FUTURE, bundle=future) as pkg:
        # StartOS installing 0.2.0 over 0.3.0: 0.2.0 admits no newer data, so the target is
        # 0.2.0 itself (in 0.3.0's canMigrateTo) and 0.3.0's down runs.
        target = uninit_target(pkg, manifest_of(future), manifest_of(BUNDLE), FUTURE)
        assert target == CURRENT, target
        assert pkg.ok("uninit", target=target)["dataVersion"] == CURRENT
    assert schema_of(volume(tmp_path)) == schema_versions()[CURRENT]
    with Package(tmp_path, images["a"], data_version=CURRENT) as pkg:
        assert pkg.ok("init", kind="update")["dataVersion"] == CURRENT
        serves_every_license_again(pkg, before)
        history = text_of(run_action(pkg, "heal-history"))
        assert f"migration {LATEST + 1}" in history and "down file" in history, history
        pkg.ok("main.stop")


def test_a_downgrade_past_an_irreversible_migration_is_refused_and_changes_nothing(
    images, future, tmp_path
):
    served_licenses(images["plain"], tmp_path, 2, bundle=future, version=FUTURE)
    conn = sqlite3.connect(volume(tmp_path))
    before = dump(conn, include_ledger=True)
    conn.close()
    with Package(tmp_path, images["plain"], data_version=FUTURE, bundle=future) as pkg:
        target = uninit_target(pkg, manifest_of(future), manifest_of(BUNDLE), FUTURE)
        answer = pkg.call("uninit", target=target)
        assert not answer["ok"], answer
        message = answer["error"]
        assert re.search(rf"Refused to revert the database: migration {LATEST + 1} ", message)
        assert "plain migration without a down file" in message, message
        assert "Nothing was changed" in message and "To fix:" in message, message
        assert "Traceback" not in message, message
        print(f"\nthe operator sees: {message}")
        # StartOS keeps the newer version: its data version did not move.
        assert pkg.ok("data.version")["dataVersion"] == FUTURE
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
