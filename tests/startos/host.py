"""What StartOS itself decides when one Keysmith package is installed over another, and the
packages it decides between: the bundle's manifest, the 0.3.5-era release as StartOS 0.4
converts it, an older release's daemon from git history, and a future native version.

The decision itself (`uninit_target`) runs in the harness (tests/startos/harness.js,
`uninitTarget`): a port of start-core's service_map.rs with the SDK's copy of StartOS's ExVer.

Sources, Start9Labs/start-os at 727e4d48ad (shared-libs/crates/ and projects/start-os/):
- start-core/src/service/service_map.rs 316-347: the uninit target of an install over a package;
- start-core/src/service/rpc.rs 98-116: the target is sent as the version's or range's text;
- container-runtime/src/Adapters/RpcListener.ts 313-329: parsed back as a version, else a range;
- start-core/src/s9pk/v2/compat.rs 178-213: a 0.3.5 manifest's conversion (canMigrateFrom any);
- exver/src/exver.rs 335-343: emver major.minor.patch.revision -> exver major.minor.patch:rev.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import yaml

from tests.image_tools import REPO
from tests.startos.driver import Package


def manifest_of(bundle: Path) -> dict[str, Any]:
    """The manifest a bundle exports, as `start-cli s9pk pack` reads it."""
    script = f"console.log(JSON.stringify(require({json.dumps(str(bundle.resolve()))}).manifest))"
    done = subprocess.run(["node", "-e", script], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def v1_manifest(manifest_yaml: str) -> dict[str, Any]:
    """A 0.3.5 manifest as StartOS 0.4 converts it (start-core src/s9pk/v2/compat.rs,
    `TryFrom<ManifestV1> for Manifest`): the emver's major.minor.patch is the upstream version
    and its revision the downstream one (exver `From<emver::Version>`), `canMigrateFrom` is any
    and `canMigrateTo` none."""
    emver = str(yaml.safe_load(manifest_yaml)["version"])
    parts = [int(p) for p in emver.split(".")] + [0]
    major, minor, patch, revision = parts[:4]
    return {
        "version": f"{major}.{minor}.{patch}:{revision}",
        "canMigrateFrom": "*",
        "canMigrateTo": "!",
    }


def uninit_target(
    pkg: Package, installed: dict[str, Any], upcoming: dict[str, Any], data_version: str | None
) -> str:
    """The target StartOS gives `installed`'s uninit when `upcoming` is installed over it."""
    fields = ("version", "canMigrateFrom", "canMigrateTo")
    return pkg.ok(
        "host.uninitTarget",
        installed={k: installed[k] for k in fields},
        next={k: upcoming[k] for k in fields},
        dataVersion=data_version,
    )["target"]


def last_commit_of_release(version: str) -> str:
    """The newest commit whose 0.3.5 manifest.yaml still says `version: "<version>"`: the parent
    of the first commit that changed it (or the newest such commit if none changed it since)."""
    log = subprocess.run(
        ["git", "-C", str(REPO), "log", "--format=%H", "--", "manifest.yaml"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    newer = None
    for commit in log:
        text = git_show(commit, "manifest.yaml")
        if re.search(rf'^version:\s*"?{re.escape(version)}"?\s*$', text, re.MULTILINE):
            return commit if newer is None else rev_parse(f"{newer}^")
        newer = commit
    raise AssertionError(f"no commit of manifest.yaml has version {version}")


def rev_parse(rev: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", rev], capture_output=True, text=True, check=True
    ).stdout.strip()


def git_show(commit: str, path: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), "show", f"{commit}:{path}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def release_tree(commit: str, dest: Path) -> Path:
    """The daemon and migrations of `commit`, unpacked into `dest` (`git archive`)."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", commit, "daemon", "migrations"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        # `filter` came with Python 3.11.4; Debian bookworm's 3.11.2 has none, and the archive
        # is this repository's own.
        tar.extractall(dest, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    return dest


FUTURE_VERSION = """import { VersionInfo } from '@start9labs/start-sdk'
import { revertSchemaTo } from './schema'

export const v_0_3_0_0 = VersionInfo.of({
  version: '0.3.0:0',
  releaseNotes: { en_US: 'A future release, for the downgrade tests.' },
  migrations: { up: async () => {}, down: revertSchemaTo('0.2.0:0') },
})
"""


def future_bundle(root: Path, schema: int) -> Path:
    """The package as a future native release 0.3.0:0 would be: this startos/ folder with one
    more version (its daemon knows `schema`; its `down` reverts to what 0.2.0 knows), the
    current 0.2.0 among its other versions. Bundled with ncc as `make` bundles the real one."""
    shutil.copytree(REPO / "startos", root / "startos")
    shutil.copy(REPO / "tsconfig.json", root / "tsconfig.json")
    (root / "node_modules").symlink_to(REPO / "node_modules")
    versions = root / "startos" / "versions"
    (versions / "v0.3.0.0.ts").write_text(FUTURE_VERSION)
    index = versions / "index.ts"
    text = index.read_text()
    current = re.search(r"current:\s*(\w+)", text).group(1)
    text = re.sub(r"current:\s*\w+", "current: v_0_3_0_0", text)
    text = re.sub(r"other:\s*\[", f"other: [{current}, ", text)
    index.write_text("import { v_0_3_0_0 } from './v0.3.0.0'\n" + text)
    schema_ts = versions / "schema.ts"
    schema_ts.write_text(
        schema_ts.read_text().replace(
            "SCHEMA_VERSION = {", f"SCHEMA_VERSION = {{\n  '0.3.0:0': {schema},", 1
        )
    )
    subprocess.run(
        ["npx", "ncc", "build", "startos/index.ts", "-o", "javascript"],
        cwd=root, capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    return root / "javascript" / "index.js"
