"""Keysat's TypeScript client (@keysat/licensing-client 0.3.0), vendored unchanged in
tests/clients/keysat-client-ts (the npm registry does not serve it), built as its author builds
it and driven by tests/clients/run_ts_client.mjs, which prints each call's answer as JSON.
Used by the client's own stories (test_api_client_ts) and by the Keysat import's."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_proc import REPO, DaemonProc

CLIENT_SRC = REPO / "tests" / "clients" / "keysat-client-ts"
DRIVER = REPO / "tests" / "clients" / "run_ts_client.mjs"
TSC = REPO / "node_modules" / ".bin" / "tsc"

# As the suite's other node tests: outside CI a missing tool is said and skipped
# (tests/system-deps.sh installs node and npm).
_absent = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
needs_node = pytest.mark.skipif(bool(_absent), reason=f"needs {', '.join(_absent)}")


def build_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The vendored client built in a copy of its folder: `npm ci` of its lock, then `tsc` (the
    project's, installed by the Makefile's own rule, a no-op when node_modules is current)."""
    folder = tmp_path_factory.mktemp("keysat-client-ts")
    shutil.copytree(CLIENT_SRC, folder, dirs_exist_ok=True)
    for command in (
        ["make", "-C", str(REPO), "startos-deps"],
        ["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
        [str(TSC), "-p", "tsconfig.json"],
    ):
        done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return folder / "dist" / "index.js"


def call(name: str, *args: Any) -> dict[str, Any]:
    return {"call": name, "args": list(args)}


def ref(index: int, field: str | None = None) -> dict[str, Any]:
    """An argument that is the answer of an earlier call in the same run (its `field`)."""
    return {"$ref": index} if field is None else {"$ref": index, "field": field}


def drive(proc: DaemonProc, client_js: Path, *calls: dict[str, Any]) -> list[dict[str, Any]]:
    """Run the calls in one node process, in order; one answer (value or error) per call."""
    done = subprocess.run(
        ["node", str(DRIVER), str(client_js), proc.url],
        input=json.dumps(calls),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"node failed:\n{done.stdout}\n{done.stderr}"
    answers = json.loads(done.stdout)
    assert len(answers) == len(calls), answers
    return answers


def value(answer: dict[str, Any]) -> Any:
    assert "error" not in answer, f"the client threw: {answer['error']}"
    return answer["value"]


def thrown(answer: dict[str, Any]) -> dict[str, Any]:
    """The client's error, which must be its own LicensingError (what the app catches)."""
    assert "error" in answer, f"the client answered {answer.get('value')!r} instead of throwing"
    error = answer["error"]
    assert error["licensingError"] and error["name"] == "LicensingError", error
    return error


def verdict(answer: dict[str, Any]) -> tuple[bool, str | None]:
    got = value(answer)
    return got["ok"], got.get("reason")
