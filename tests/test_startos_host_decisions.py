"""StartOS's own choice of the uninit target (tests/startos/host.py, ported from start-core's
service_map.rs) for the installs that matter to Keysmith, from the real bundle's manifest: no
image needed. The image tests (tests/test_startos_downgrade.py) run each case end to end."""

from __future__ import annotations

import pytest

from daemon import downgrade
from tests.startos.driver import BUNDLE, Package, build_bundle, missing_node
from tests.startos.host import (
    git_show,
    last_commit_of_release,
    manifest_of,
    uninit_target,
    v1_manifest,
)
from tests.test_startos_versions import current_version, schema_versions

pytestmark = pytest.mark.skipif(bool(missing_node()), reason=str(missing_node()))

# A future native release as the SDK's buildManifest shapes it (VersionGraph.canMigrateTo and
# canMigrateFrom: every version its graph reaches, here 0.2.0:0 and the range below it).
FUTURE = {"version": "0.3.0:0", "canMigrateFrom": "<=0.3.0:0", "canMigrateTo": "<=0.3.0:0"}


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    build_bundle()
    with Package(tmp_path_factory.mktemp("host")) as pkg:
        yield pkg


@pytest.fixture(scope="module")
def current() -> dict:
    return manifest_of(BUNDLE)


def test_installing_0_1_0_hands_this_versions_uninit_the_data_version_itself(host, current):
    # Why 'Prepare a downgrade to Keysmith 0.1' exists: the down migration never runs.
    older = v1_manifest(git_show(last_commit_of_release("0.1.0"), "manifest.yaml"))
    assert older == {"version": "0.1.0:0", "canMigrateFrom": "*", "canMigrateTo": "!"}
    data_version = current_version()
    assert uninit_target(host, current, older, data_version) == data_version


def test_installing_this_version_over_a_newer_native_one_runs_the_newers_down(host, current):
    # This version admits no newer data version, so the host falls to the newer package's
    # canMigrateTo, which holds this version: target = this version, reached by `down`.
    for newer_data in ("0.3.0:0", "0.2.0:1", "0.2.1:0"):
        assert uninit_target(host, FUTURE, current, newer_data) == current["version"], newer_data


def test_upgrading_from_this_version_leaves_the_data_version_for_the_newers_init(host, current):
    assert uninit_target(host, current, FUTURE, current["version"]) == current["version"]


def test_this_version_reaches_the_0_3_5_era_release_through_its_down(current):
    assert current["canMigrateTo"] == f"<={current['version']}"
    assert current["canMigrateFrom"] == f"<={current['version']}"


def test_the_daemon_prepares_the_schema_the_version_graph_reverts_to():
    assert schema_versions()["0.1.0:0"] == downgrade.OLDER_SCHEMA
    assert f"{downgrade.OLDER_RELEASE}:0" == "0.1.0:0"


def test_the_0_1_0_release_is_found_in_history():
    commit = last_commit_of_release("0.1.0")
    assert 'version: "0.1.0"' in git_show(commit, "manifest.yaml")
    assert '__version__ = "0.1.0"' in git_show(commit, "daemon/__init__.py")
