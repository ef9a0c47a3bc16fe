"""The image tests skip on a machine without podman, buildah or node, but never in CI: a CI run
that skipped them all would pass having tested nothing of the image."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.daemon_proc import REPO

IMAGE_MODULES = ("tests/test_image.py", "tests/test_startos_image.py",
                 "tests/test_startos_downgrade.py")  # fmt: skip


def run_without_tools(tmp_path, module: str, ci: bool) -> subprocess.CompletedProcess[str]:
    """pytest on `module` with a PATH that has none of the image tools."""
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path)} | ({"CI": "true"} if ci else {})
    return subprocess.run(
        [sys.executable, "-m", "pytest", module, "-q", "-p", "no:cacheprovider", "-x"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("module", IMAGE_MODULES)
def test_missing_tools_fail_the_image_tests_in_ci(tmp_path, module):
    done = run_without_tools(tmp_path, module, ci=True)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "the image tests cannot run in CI" in done.stdout and "podman" in done.stdout


def test_missing_tools_skip_the_image_tests_elsewhere(tmp_path):
    done = run_without_tools(tmp_path, "tests/test_startos_image.py", ci=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "skipped" in done.stdout and "failed" not in done.stdout
