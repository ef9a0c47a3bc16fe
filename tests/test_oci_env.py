"""scripts/oci-env.sh is sourced by every build and read by every test process (two pytest
workers collect at once): run side by side on a fresh cache folder, each must succeed and see
the same private settings, never a half-written file."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_many_processes_at_once_on_a_fresh_cache_all_get_the_same_settings(tmp_path):
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "KEYSMITH_IMAGE_CACHE": str(tmp_path / "c")}
    runs = [
        subprocess.Popen(
            ["bash", str(REPO / "scripts" / "oci-env.sh"), "--print"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    results = [(run.wait(timeout=60), *run.communicate()) for run in runs]
    assert [code for code, _, _ in results] == [0] * 8, [err for _, _, err in results]
    assert len({out for _, out, _ in results}) == 1
    conf = tmp_path / "c" / "oci" / "storage.conf"
    assert 'graphroot = "' in conf.read_text()
    assert not list((tmp_path / "c" / "oci").glob("*.new"))
