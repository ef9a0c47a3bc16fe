"""The StartOS 0.4 package (startos/, start-sdk 2.0.9) from a fresh clone: it installs, type-checks,
passes the SDK's lint gate and bundles; the bundled manifest follows the s9pk v2 rules; the
actions are built from the daemon's catalogue (startos/actions.json) with nothing lost on the
way; and the version graph takes over a 0.3.5 volume. No container: the image-backed half is
tests/test_startos_image.py.

What these would catch: a manifest that packs but cannot install (an arch list the SDK silently
turns into "any architecture, emulated", a description over the limit), an action whose form
drops a limit the daemon relies on, a version graph that refuses the 0.3.5 data version.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.startos.driver import Package, missing_node

REPO = Path(__file__).resolve().parent.parent
CATALOGUE: list[dict[str, Any]] = json.loads((REPO / "startos" / "actions.json").read_text())

_reason = missing_node()
pytestmark = pytest.mark.skipif(_reason is not None, reason=f"needs node and npm: {_reason}")

# The s9pk v2 rules start-cli enforces (shared/docs/startos-0.4.md).
ID = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
EXVER = re.compile(r"^(#[a-z0-9]+:)?\d+(\.\d+)*(-[a-z0-9.]+)?:\d+(\.\d+)*(-[a-z0-9.]+)?$")
SHORT_LIMIT, LONG_LIMIT = 160, 5000
ICON_LIMIT = 100 * 1024
# What CI builds and boots (the Makefile's ARCHES; tests/test_s9pk.py checks they agree).
ARCHES = ["x86_64"]
ACTION_IDS = {
    "migration-status", "admin-credentials", "restore-backup", "create-product",
    "create-policy", "issue-license", "revoke-license", "suspend-license", "unsuspend-license",
    "search-licenses", "list-machines", "deactivate-machine", "create-discount-code",
    "disable-discount-code", "audit-log", "heal-history", "set-console-password",
    "accept-migration", "prepare-downgrade", "cancel-downgrade", "server-limits",
    "show-server-limits", "import-keysat",
}  # fmt: skip
# The SDK's form value type for each catalogue kind.
FORM_TYPES = {"text": "text", "textarea": "textarea", "number": "number", "toggle": "toggle",
              "select": "select"}  # fmt: skip


def run(argv: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    command = " ".join(argv)
    assert done.returncode == 0, f"{command}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh clone of the committed tree, built as CI builds it: npm ci, then the Makefile's
    bundle target, which checks first (tsc --noEmit, the SDK's lint.mjs), then bundles (ncc)."""
    folder = tmp_path_factory.mktemp("clone") / "keysmith"
    run(["git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(folder)], REPO)
    assert not (folder / "node_modules").exists() and not (folder / "javascript").exists()
    run(["make", "javascript/index.js"], folder)
    return folder


@pytest.fixture(scope="module")
def manifest(clone: Path) -> dict[str, Any]:
    """The manifest exactly as `start-cli s9pk pack` reads it from the bundle."""
    script = "console.log(JSON.stringify(require('./javascript/index.js').manifest))"
    return json.loads(run(["node", "-e", script], clone).stdout)


def test_fresh_clone_installs_type_checks_lints_and_bundles(clone):
    lock = json.loads((clone / "package-lock.json").read_text())
    packages = lock["packages"]
    assert packages["node_modules/@start9labs/start-sdk"]["version"] == "2.0.9"
    assert packages["node_modules/typescript"]["version"].startswith("6.0.")
    assert json.loads((clone / "package.json").read_text())["dependencies"] == {
        "@start9labs/start-sdk": "2.0.9"
    }
    bundle = clone / "javascript" / "index.js"
    script = ("const b = require('./javascript/index.js'); console.log(JSON.stringify("
              "Object.fromEntries(Object.entries(b).map(([k, v]) => [k, typeof v]))))")  # fmt: skip
    exports = json.loads(run(["node", "-e", script], clone).stdout)
    # What StartOS calls; `actions` is an object (a bundler that resolved './actions' to
    # actions.json once exported it as undefined).
    assert exports == {"main": "function", "init": "function", "uninit": "function",
                       "createBackup": "function", "actions": "object",
                       "manifest": "object"}, exports  # fmt: skip
    assert bundle.stat().st_size > 100_000


def test_type_errors_fail_the_check(clone, tmp_path):
    """The check can fail: an unknown volume id is a compile error, not a runtime surprise."""
    main = clone / "startos" / "utils.ts"
    original = main.read_text()
    main.write_text(original.replace("volumeId: 'main'", "volumeId: 'mian'"))
    try:
        done = subprocess.run(["npx", "tsc", "--noEmit"], cwd=clone, capture_output=True,
                              text=True, timeout=300)  # fmt: skip
    finally:
        main.write_text(original)
    assert done.returncode != 0 and "mian" in done.stdout, done.stdout


def test_manifest_identity_and_version(manifest):
    assert manifest["id"] == "keysmith" and ID.match(manifest["id"])
    assert manifest["title"] == "Keysmith"
    assert EXVER.match(manifest["version"]), manifest["version"]
    assert manifest["sdkVersion"] == "2.0.9"
    assert manifest["license"] == "MIT"
    for url in ("packageRepo", "upstreamRepo", "marketingUrl"):
        assert manifest[url].startswith("https://"), url


def test_manifest_descriptions_within_limits(manifest):
    for field, limit in (("short", SHORT_LIMIT), ("long", LONG_LIMIT)):
        texts = manifest["description"][field]
        texts = texts if isinstance(texts, dict) else {"": texts}
        assert "en_US" in texts
        for locale, text in texts.items():
            assert 0 < len(text) <= limit, f"description.{field}[{locale}]: {len(text)} chars"
    # SDK 2.0.9 has no `alerts`; the uninstall warning lives in the long description.
    long = manifest["description"]["long"]["en_US"]
    assert "Uninstalling deletes" in long and "signing key" in long and "license record" in long


def test_manifest_volume_image_and_architectures(manifest):
    assert manifest["volumes"] == ["main"]
    assert list(manifest["images"]) == ["main"]
    image = manifest["images"]["main"]
    build = image["source"]["dockerBuild"]
    assert (REPO / build.get("workdir", ".") / build["dockerfile"]).is_file()
    assert image["arch"] == ARCHES
    # Without this the SDK's default (x86_64) would make any architecture installable.
    assert image["emulateMissingAs"] is None
    assert manifest["hardwareRequirements"]["arch"] == ARCHES


def test_package_root_assets():
    icons = [p for p in REPO.iterdir() if p.is_file() and p.name.startswith("icon")]
    assert len(icons) == 1, icons
    assert icons[0].stat().st_size <= ICON_LIMIT
    licenses = [p for p in REPO.iterdir() if p.is_file() and p.name.lower().startswith("license")]
    assert len(licenses) == 1, licenses
    assert (REPO / "instructions.md").is_file()
    # pack squashes assets/ into assets.squashfs and stops when the folder is missing.
    assert (REPO / "assets").is_dir()


def test_catalogue_follows_the_contract():
    assert {a["id"] for a in CATALOGUE} == ACTION_IDS
    assert len(CATALOGUE) == len(ACTION_IDS), "an action id is declared twice"
    keys = {"id", "name", "description", "warning", "allowedStatuses", "group", "visibility",
            "input", "prefill"}  # fmt: skip
    field_keys = {"id", "kind", "name", "description", "required", "default", "placeholder",
                  "masked", "min", "max", "integer", "choices", "minLength",
                  "maxLength"}  # fmt: skip
    for action in CATALOGUE:
        assert set(action) == keys, action["id"]
        assert action["allowedStatuses"] in ("any", "only-running", "only-stopped")
        assert action["visibility"] == "enabled"
        assert isinstance(action["prefill"], bool) and (action["input"] or not action["prefill"])
        for field in action["input"] or []:
            assert set(field) == field_keys, (action["id"], field)
            assert field["kind"] in FORM_TYPES, (action["id"], field)
            if field["kind"] == "select":
                assert field["choices"], (action["id"], field["id"])
    statuses = {a["id"]: a["allowedStatuses"] for a in CATALOGUE}
    assert statuses["restore-backup"] == "only-stopped"
    assert statuses["accept-migration"] == "only-stopped"
    assert statuses["prepare-downgrade"] == statuses["cancel-downgrade"] == "only-stopped"
    assert statuses["import-keysat"] == "only-stopped"


@pytest.fixture(scope="module")
def inspected(clone: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The package's init on a 0.3.5 volume (data version 0.1.0:0), and every action's form."""
    folder = tmp_path_factory.mktemp("inspect")
    bundle = clone / "javascript" / "index.js"
    with Package(folder, data_version="0.1.0:0", bundle=bundle) as pkg:
        init = pkg.ok("init", kind="update")
        forms = pkg.ok("action.forms")["forms"]
    return {"init": init, "forms": forms}


def test_every_catalogue_action_is_exported_as_declared(inspected):
    exported = inspected["init"]["actions"]
    assert list(exported) == [a["id"] for a in CATALOGUE]
    for action in CATALOGUE:
        metadata = exported[action["id"]]
        for key in ("name", "description", "warning", "allowedStatuses", "group", "visibility"):
            assert metadata[key] == action[key], (action["id"], key)
        assert metadata["hasInput"] is (action["input"] is not None), action["id"]


def test_forms_keep_every_field_and_limit(inspected):
    forms = inspected["forms"]
    for action in CATALOGUE:
        form = forms[action["id"]]
        fields = action["input"] or []
        assert list(form) == [f["id"] for f in fields], action["id"]
        for field in fields:
            spec = form[field["id"]]
            where = f"{action['id']}.{field['id']}"
            assert spec["type"] == FORM_TYPES[field["kind"]], where
            assert spec["name"] == field["name"] and spec["description"] == field["description"]
            if field["kind"] in ("text", "textarea", "number"):
                assert spec["required"] is field["required"], where
            if field["kind"] in ("text", "textarea"):
                assert (spec["minLength"], spec["maxLength"]) == (
                    field["minLength"], field["maxLength"]), where  # fmt: skip
            if field["kind"] == "text":
                assert spec["masked"] is field["masked"], where
            if field["kind"] == "number":
                assert (spec["min"], spec["max"], spec["integer"]) == (
                    field["min"], field["max"], field["integer"]), where  # fmt: skip
            if field["kind"] == "select":
                assert spec["values"] == field["choices"], where
                assert spec["default"] in field["choices"], where
            if field["default"] is not None:
                assert spec["default"] == field["default"], where


def test_version_graph_takes_over_a_0_3_5_volume(inspected):
    init = inspected["init"]
    # 0.1.0:0 (what a 0.3.5 install of 0.1.0 is) migrates to the first native version with
    # a no-op: the daemon's own migrator does the schema work at boot.
    assert init["dataVersion"] == "0.2.0:0"
    assert [b["internalPort"] for b in init["bindings"]] == [8080]
    # The console is the daemon's /admin/ on the API's own port.
    interfaces = [(i["id"], i["type"], i["addressInfo"]["suffix"]) for i in init["interfaces"]]
    assert interfaces == [
        ("api", "api", ""),
        ("console", "ui", "/admin/"),
    ]


def test_version_graph_refuses_a_newer_data_version(clone, tmp_path):
    """A volume from a later Keysmith cannot be taken back: init fails instead of guessing."""
    bundle = clone / "javascript" / "index.js"
    with Package(tmp_path, data_version="0.3.0:0", bundle=bundle) as pkg:
        answer = pkg.call("init", kind="update")
    assert not answer["ok"] and "0.3.0:0" in answer["error"], answer
