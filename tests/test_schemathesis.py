"""Schemathesis against the daemon's own `GET /v1/openapi.json`, every operation.

Runs the `st` command line as a subprocess against a real daemon on 127.0.0.1, with a few
examples per operation (the whole module stays well under two minutes). Besides
`not_a_server_error`, the responses are checked against the document itself (status codes,
content types and response schemas), so the hand-written OpenAPI cannot drift from what
the daemon answers. Admin operations get the Bearer header; a second run sends none and
must change nothing.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.daemon_proc import DaemonProc, base_env
from tests.test_api_support import admin, db_dump, issue, make_product, must


@pytest.fixture(scope="module", name="daemon")
def daemon(tmp_path_factory):
    """A serving daemon whose webhook attempts take at most 1 s (the endpoints the fuzzer
    creates point anywhere; see the test without the key)."""
    with DaemonProc(
        tmp_path_factory.mktemp("daemon"), env={"KEYSMITH_WEBHOOK_TIMEOUT": "1"}
    ) as proc:
        assert proc.status()["state"] == "serving", proc.log_text()
        yield proc


CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)
EXAMPLES_PER_OPERATION = 5
RUN_TIMEOUT = 150.0  # seconds for one whole schemathesis run; a hang fails the test
KEY_VARIABLE = "KEYSMITH_TEST_ST_ADMIN_KEY"  # the config reads the key from here, not the file


@pytest.fixture(scope="module")
def resources(daemon):
    """Real ids and slugs, so operations with path parameters reach past a 404."""
    slug = make_product(daemon, seats=3)
    lic = issue(daemon, slug)
    activated = must(
        daemon.request(
            "POST", "/v1/machines/activate", {"key": lic["license_key"], "fingerprint": "fp-st"}
        ),
        200,
    )
    code = must(
        admin(
            daemon, "POST", "/v1/admin/discount-codes", {"code": "st-free", "kind": "free_license"}
        ),
        200,
    )
    [policy] = must(admin(daemon, "GET", f"/v1/admin/policies?product_slug={slug}"), 200)[
        "policies"
    ]
    return {
        "^/v1/products/": {"path.slug": slug},
        "^/v1/admin/products/": {"path.id": lic["product_id"]},
        "^/v1/admin/policies/": {"path.id": policy["id"]},
        "^/v1/admin/licenses/\\{id\\}": {"path.id": lic["license_id"]},
        "^/v1/admin/discount-codes/": {"path.id": code["id"]},
        "^/v1/admin/machines/": {"path.id": activated["machine_id"]},
    }


def _toml(value: object) -> str:
    return json.dumps(value)  # a JSON string or number is valid TOML too


def write_config(folder: Path, resources: dict[str, dict[str, str]], *, with_key: bool) -> Path:
    lines = []
    if with_key:
        lines += [
            "[[operations]]",
            'include-tag = "admin"',
            f'headers = {{ Authorization = "Bearer ${{{KEY_VARIABLE}}}" }}',
            "",
        ]
    lines += [
        # The one documented 503: purchases need a payment provider and none is configured.
        "[[operations]]",
        'include-path-regex = "^/v1/purchase"',
        'checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "503"]',
        "",
    ]
    for regex, parameters in resources.items():
        pairs = ", ".join(f"{_toml(k)} = {_toml(v)}" for k, v in parameters.items())
        lines += [
            "[[operations]]",
            f"include-path-regex = {_toml(regex)}",
            f"parameters = {{ {pairs} }}",
            "",
        ]
    path = folder / "schemathesis.toml"
    path.write_text("\n".join(lines))
    return path


def run_schemathesis(
    proc: DaemonProc, folder: Path, config: Path, *extra: str
) -> tuple[subprocess.CompletedProcess[str], ET.Element]:
    reports = folder / "reports"
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "run",
        f"{proc.url}/v1/openapi.json",
        "--checks",
        ",".join(CHECKS),
        "--max-examples",
        str(EXAMPLES_PER_OPERATION),
        "--request-timeout",
        "10",
        "--workers",
        "1",
        "--report",
        "junit",
        "--report-dir",
        str(reports),
        "--no-color",
        *extra,
    ]
    env = base_env({KEY_VARIABLE: proc.env["KEYSMITH_ADMIN_API_KEY"]})
    done = subprocess.run(
        command, cwd=folder, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT
    )
    [junit] = reports.glob("junit-*.xml")
    return done, ET.parse(junit).getroot()


def operations(proc: DaemonProc, tag: str | None = None) -> set[str]:
    """Every operation the document lists, except the one schemathesis loaded it from (it
    does not test its own schema URL; tests/test_api_openapi.py checks the document)."""
    document = must(proc.request("GET", "/v1/openapi.json"), 200)
    return {
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        for method, op in item.items()
        if isinstance(op, dict) and (tag is None or tag in op.get("tags", []))
    } - {"GET /v1/openapi.json"}


def ran_operations(junit: ET.Element) -> dict[str, ET.Element]:
    return {case.get("name"): case for case in junit.iter("testcase")}


def failed(junit: ET.Element) -> dict[str, str]:
    return {
        case.get("name"): ET.tostring(case, encoding="unicode")[:2000]
        for case in junit.iter("testcase")
        if case.find("failure") is not None or case.find("error") is not None
    }


def http_counts(proc: DaemonProc) -> dict[tuple[str, str, str], float]:
    """keysmith_http_requests_total by (route, method, status), from /metrics."""
    status, text = proc.request("GET", "/metrics")
    assert status == 200
    counts = {}
    for line in text.splitlines():
        match = re.match(r"^keysmith_http_requests_total\{(.*)\} (\S+)$", line)
        if match:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
            counts[(labels["route"], labels["method"], labels["status"])] = float(match.group(2))
    return counts


def test_every_operation_passes_schemathesis_with_the_admin_key(daemon, resources, tmp_path):
    config = write_config(tmp_path, resources, with_key=True)
    done, junit = run_schemathesis(daemon, tmp_path, config)
    report = f"{done.stdout[-6000:]}\n{done.stderr[-2000:]}"
    assert failed(junit) == {}, report
    assert done.returncode == 0, report
    assert operations(daemon) <= set(ran_operations(junit)), report
    # Admin operations really ran with the key: some answered 2xx, as only a keyed call can.
    admin_ok = [
        k
        for k, n in http_counts(daemon).items()
        if k[0].startswith("/v1/admin/") and k[2].startswith("2") and n > 0
    ]
    assert admin_ok, http_counts(daemon)


def test_admin_operations_without_the_key_change_nothing(daemon, resources, tmp_path):
    # The test with the key created webhook endpoints at generated URLs; their deliveries'
    # attempts would be written while this test runs. Disabled, nothing is sent or logged.
    listed = daemon.request("GET", "/v1/admin/webhook-endpoints", headers=daemon.admin_headers())
    for endpoint in listed[1]["endpoints"]:
        path = f"/v1/admin/webhook-endpoints/{endpoint['id']}/active"
        off = {"active": False}
        assert daemon.request("PATCH", path, off, headers=daemon.admin_headers())[0] == 200
    time.sleep(1.5)  # an attempt under way when disabled is recorded within its 1 s timeout
    before_dump = db_dump(daemon)
    before = http_counts(daemon)
    config = write_config(tmp_path, resources, with_key=False)
    done, junit = run_schemathesis(daemon, tmp_path, config, "--include-tag", "admin")
    report = f"{done.stdout[-6000:]}\n{done.stderr[-2000:]}"
    assert failed(junit) == {}, report
    assert operations(daemon, "admin") <= set(ran_operations(junit)), report
    after = http_counts(daemon)
    grown = {k: after[k] - before.get(k, 0.0) for k in after if after[k] > before.get(k, 0.0)}
    # A CORS preflight (OPTIONS, Keysat's permissive layer) runs no handler: 204, no body.
    on_admin = {
        k: n for k, n in grown.items() if k[0].startswith("/v1/admin/") and k[1] != "OPTIONS"
    }
    assert {s for _r, m, s in grown if m == "OPTIONS"} <= {"204"}, grown
    # 401 without a key, 403 with one that is wrong (Keysat's statuses); never anything else.
    statuses = {status for _route, _method, status in on_admin}
    assert on_admin and "401" in statuses and statuses <= {"401", "403"}, grown
    assert db_dump(daemon) == before_dump


def test_the_daemon_is_healthy_after_schemathesis(daemon):
    status, body = daemon.request("GET", "/healthz")
    assert (status, body["state"]) == (200, "serving"), body
    server_errors = {k: n for k, n in http_counts(daemon).items() if k[2].startswith("5")}
    assert set(server_errors) <= {
        ("/v1/purchase", "POST", "503"),
        ("/v1/purchase/{invoice_id}", "GET", "503"),
    }, server_errors
    assert "unhandled error" not in daemon.log_text()
