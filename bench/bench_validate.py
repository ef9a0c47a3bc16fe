"""Benchmark: `POST /v1/validate` next to `GET /healthz` on the same daemon, same run.

Starts the real daemon (`python -m daemon serve`) on a loopback port with a fresh database,
issues licenses through the admin API, binds each to a machine with one validation, then
drives both routes with wrk (Debian package `wrk`; another process, so the load generator
does not share the server's event loop) at 64 connections. Validate requests rotate over
all issued keys with their fingerprints, and a wrk Lua hook counts every answer that is not
`"ok":true`, so a fast wrong answer cannot pass for a fast right one.

Targets (issue 4): validate throughput >= 35% of healthz's, validate p99 <= 3x healthz's.

    .venv/bin/python bench/bench_validate.py            # 3 rounds x 10 s per route
    .venv/bin/python bench/bench_validate.py --quick    # 2 rounds x 2 s (CI smoke)
    .venv/bin/python bench/bench_validate.py --enforce  # exit 1 when a target is missed

Rounds alternate healthz and validate so drift on a shared machine hits both; the figures
are the medians over rounds. Exit codes: 0 done (targets met, or not enforced), 1 target
missed with --enforce, 2 could not run (wrk missing, daemon failed, wrong answers).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.daemon_proc import DaemonProc  # noqa: E402  (after the path fix above)

CONNECTIONS = 64
THROUGHPUT_TARGET = 0.35
P99_TARGET = 3.0

LUA_TEMPLATE = """
local bodies = %(bodies)s
local i = 0
bad = 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function request()
  i = i + 1
  if i > #bodies then i = 1 end
  return wrk.format("POST", "/v1/validate", {["Content-Type"] = "application/json"}, bodies[i])
end

function response(status, headers, body)
  if status ~= 200 or not string.find(body, '"ok":%%s*true') then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + t:get("bad") end
  io.write(string.format("BAD_ANSWERS %%d\\n", total))
end
"""


@dataclass
class Run:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    bad_answers: int = 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if shutil.which("wrk") is None:
        print("bench_validate: wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    rounds, seconds = (2, 2) if args.quick else (args.rounds, args.seconds)
    licenses = 50 if args.quick else args.licenses
    with (
        tempfile.TemporaryDirectory(prefix="keysmith-bench-") as tmp,
        DaemonProc(Path(tmp)) as daemon,
    ):
        if daemon.status().get("state") != "serving":
            print(f"bench_validate: daemon did not serve:\n{daemon.log_text()}", file=sys.stderr)
            return 2
        script = Path(tmp) / "validate.lua"
        script.write_text(LUA_TEMPLATE % {"bodies": _lua_list(_seed(daemon, licenses))})
        healthz, validate = [], []
        _wrk(daemon.url + "/healthz", 1, None)  # warm up both paths once
        _wrk(daemon.url + "/v1/validate", 1, script)
        for _ in range(rounds):
            healthz.append(_wrk(daemon.url + "/healthz", seconds, None))
            validate.append(_wrk(daemon.url + "/v1/validate", seconds, script))
    bad = sum(run.bad_answers for run in validate)
    if bad:
        print(
            f"bench_validate: {bad} validate answers were not ok: the benchmark is void",
            file=sys.stderr,
        )
        return 2
    return _report(_median(healthz), _median(validate), rounds, seconds, licenses, args.enforce)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2 s (CI smoke)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--licenses", type=int, default=500, help="distinct keys validated")
    parser.add_argument("--enforce", action="store_true", help="exit 1 when a target is missed")
    return parser


def _seed(daemon: DaemonProc, count: int) -> list[str]:
    """Issue `count` licenses (2 seats each) and bind each to one machine; return the bodies."""
    headers = daemon.admin_headers()
    _must(
        daemon.request(
            "POST",
            "/v1/admin/products",
            {
                "slug": "bench-app",
                "name": "Bench App",
                "price_sats": 21_000,
                "entitlements_catalog": [{"slug": "pro", "name": "Pro"}],
            },
            headers,
        ),
        200,
    )
    _must(
        daemon.request(
            "POST",
            "/v1/admin/policies",
            {
                "product_slug": "bench-app",
                "slug": "team",
                "name": "Team",
                "max_machines": 2,
                "entitlements": ["pro"],
                "is_default": True,
            },
            headers,
        ),
        200,
    )
    bodies = []
    for n in range(count):
        issued = _must(
            daemon.request("POST", "/v1/admin/licenses", {"product_slug": "bench-app"}, headers),
            200,
        )
        body = {
            "key": issued["license_key"],
            "product_slug": "bench-app",
            "fingerprint": f"bench-machine-{n}",
        }
        answer = _must(daemon.request("POST", "/v1/validate", body), 200)
        if not answer.get("ok") or not answer.get("machine_id"):
            raise SystemExit(f"bench_validate: seeding validation failed: {answer}")
        bodies.append(json.dumps(body))
    return bodies


def _must(answer: tuple[int, object], status: int) -> dict:
    got, body = answer
    if got != status or not isinstance(body, dict):
        raise SystemExit(f"bench_validate: expected HTTP {status}, got {got}: {body}")
    return body


def _lua_list(items: list[str]) -> str:
    return "{" + ",".join(_lua_string(item) for item in items) + "}"


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _wrk(url: str, seconds: int, script: Path | None) -> Run:
    command = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    if script is not None:
        command += ["-s", str(script)]
    done = subprocess.run([*command, url], capture_output=True, text=True, timeout=seconds + 30)
    if done.returncode != 0:
        raise SystemExit(f"bench_validate: wrk failed: {done.stderr}")
    return _parse_wrk(done.stdout)


def _parse_wrk(out: str) -> Run:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    if not (rps and p50 and p99):
        raise SystemExit(f"bench_validate: could not read wrk output:\n{out}")
    errors = re.search(r"Socket errors: .*", out)
    if errors:
        print(f"bench_validate: wrk reported {errors.group(0)}", file=sys.stderr)
    bad = re.search(r"BAD_ANSWERS (\d+)", out)
    return Run(float(rps.group(1)), _ms(p50), _ms(p99), int(bad.group(1)) if bad else 0)


def _ms(match: re.Match[str]) -> float:
    value, unit = float(match.group(1)), match.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def _median(runs: list[Run]) -> Run:
    return Run(
        statistics.median(r.requests_per_s for r in runs),
        statistics.median(r.p50_ms for r in runs),
        statistics.median(r.p99_ms for r in runs),
    )


def _report(
    healthz: Run, validate: Run, rounds: int, seconds: int, licenses: int, enforce: bool
) -> int:
    throughput = validate.requests_per_s / healthz.requests_per_s
    p99 = validate.p99_ms / healthz.p99_ms if healthz.p99_ms else float("inf")
    print(
        f"keysmith validate benchmark: {CONNECTIONS} connections, wrk -t1, "
        f"{rounds} round(s) x {seconds} s per route, {licenses} distinct keys (medians)"
    )
    print(f"{'route':<18}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for name, run in (("GET /healthz", healthz), ("POST /v1/validate", validate)):
        print(f"{name:<18}{run.requests_per_s:>10.0f}{run.p50_ms:>10.2f}{run.p99_ms:>10.2f}")
    throughput_ok = throughput >= THROUGHPUT_TARGET
    p99_ok = p99 <= P99_TARGET
    print(
        f"throughput ratio validate/healthz = {throughput:.2f} "
        f"(target >= {THROUGHPUT_TARGET:.2f}) {'PASS' if throughput_ok else 'MISS'}"
    )
    print(
        f"p99 ratio validate/healthz = {p99:.2f} "
        f"(target <= {P99_TARGET:.1f}) {'PASS' if p99_ok else 'MISS'}"
    )
    return 1 if enforce and not (throughput_ok and p99_ok) else 0


if __name__ == "__main__":
    sys.exit(main())
