"""The floors under Keysmith's `POST /v1/validate`, for bench_scale.py to compare against.

    python bench/scale_floor.py alone DB BODIES      # the validate work outside HTTP (JSON out)
    python bench/scale_floor.py read PORT DB         # bare aiohttp: the SQLite read + encode
    python bench/scale_floor.py validate PORT DB     # bare aiohttp: the real validate

`alone` times, in this process, what validate does for each wrk body in the same order: decode
the body, `Licensing.validate` (key cache, signature check on a miss, the SQLite read, the
verdict) and encode the answer; then, apart, one signature check and one SQLite read.
`read` answers each body with the license row validate reads (the key's payload is parsed,
its signature not checked) and nothing else; `validate` is a bare handler around the real
service: neither has middlewares, metrics, rate limits, CORS or the route table.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web
from cryptography.exceptions import InvalidSignature

from daemon import metrics
from daemon.db import open_pool
from daemon.licensing import keys, models, wire
from daemon.licensing.service import Licensing
from daemon.licensing.state import LicenseReader

SAMPLES = 2_000  # keys timed apart for the signature check and the read
# Bodies `alone` times (after a pass over the same ones): about what one wrk run answers, so
# the key cache holds about as many of them as it does under the load.
ALONE_BODIES = 20_000


async def alone(db: Path, bodies: list[bytes]) -> dict[str, float]:
    pool = await open_pool(db)
    service = await Licensing.open(pool)
    validate = _validate_of(service)
    try:
        for raw in bodies:  # one pass to reach the key cache's steady state, as wrk's warm-up
            wire.encode(await validate(wire.decode(models.ValidateRequest, raw)))
        hits, misses = _lookups()
        started = time.process_time()
        for raw in bodies:
            wire.encode(await validate(wire.decode(models.ValidateRequest, raw)))
        cpu = time.process_time() - started
        hits_after, misses_after = _lookups()
    finally:
        service.close()
        await pool.close()
    misses = misses_after - misses
    hits = hits_after - hits
    return {
        "validate_us": cpu / len(bodies) * 1e6,
        "miss_share": misses / max(1, hits + misses),
        "verify_us": _verify_us(db, bodies),
        "read_us": _read_us(db, bodies),
    }


def _validate_of(service: Licensing) -> Any:
    """The service's validate: a use case of its own (`service.validation`) since issue 24's
    composition, a method of the service in older checkouts (`--code`)."""
    return getattr(service, "validation", service).validate


def _lookups() -> tuple[float, float]:
    """The key cache's hits and misses so far, as /metrics shows them."""
    name = "keysmith_key_cache_lookups_total"
    return tuple(metrics.sample(name, {"outcome": o}) or 0.0 for o in ("hit", "miss"))  # type: ignore[return-value]


def _keys(bodies: list[bytes]) -> list[keys.ParsedKey]:
    parsed = []
    for raw in bodies[:SAMPLES]:
        try:
            parsed.append(keys.parse_key(json.loads(raw)["key"]))
        except keys.KeyFormatError:
            continue
    return parsed


def _verify_us(db: Path, bodies: list[bytes]) -> float:
    import sqlite3

    conn = sqlite3.connect(db)
    private = conn.execute("SELECT private_key FROM issuer_keys WHERE active = 1").fetchone()[0]
    conn.close()
    public = keys.IssuerKey.from_private_bytes(bytes(private)).public
    parsed = _keys(bodies)
    started = time.process_time()
    for key in parsed:
        with contextlib.suppress(InvalidSignature):  # a forged key: the same work
            public.verify(key.signature, key.payload_bytes)
    return (time.process_time() - started) / max(1, len(parsed)) * 1e6


def _read_us(db: Path, bodies: list[bytes]) -> float:
    reader = LicenseReader(db)
    ids = [str(k.payload.license_id) for k in _keys(bodies)]
    for license_id in ids:  # the same pages warm, as under the load
        reader.view(license_id)
    started = time.process_time()
    for license_id in ids:
        reader.view(license_id)
    cpu = time.process_time() - started
    reader.close()
    return cpu / max(1, len(ids)) * 1e6


def serve_read(port: int, db: Path) -> None:
    reader = LicenseReader(db)
    encoder = msgspec.json.Encoder()
    missing = encoder.encode({"ok": False, "reason": "not_found"})

    async def validate(request: web.Request) -> web.Response:
        body = msgspec.json.decode(await request.read())
        try:
            license_id = str(keys.parse_key(body["key"]).payload.license_id)
        except keys.KeyFormatError:
            return web.Response(body=missing, content_type="application/json")
        fingerprint = body.get("fingerprint")
        fp_hash = None if fingerprint is None else keys.fingerprint_hash(fingerprint).hex()
        view = reader.view(license_id, fp_hash)
        answer = missing if view is None else encoder.encode(view)
        return web.Response(body=answer, content_type="application/json")

    _run(port, validate)


def serve_validate(port: int, db: Path) -> None:
    state: dict[str, Licensing] = {}

    async def open_service(_app: web.Application) -> None:
        state["service"] = await Licensing.open(await open_pool(db))

    async def validate(request: web.Request) -> web.Response:
        body = wire.decode(models.ValidateRequest, await request.read())
        answer = wire.encode(await _validate_of(state["service"])(body))
        return web.Response(body=answer, content_type="application/json")

    _run(port, validate, open_service)


def _run(port: int, validate, on_startup=None) -> None:
    import uvloop

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_post("/v1/validate", validate)
    if on_startup is not None:
        app.on_startup.append(on_startup)
    web.run_app(
        app, host="127.0.0.1", port=port, access_log=None, print=None,
        loop=uvloop.new_event_loop(),
    )  # fmt: skip


def main(argv: list[str]) -> int:
    mode = argv[0]
    if mode == "alone":
        bodies = [b.encode() for b in json.loads(Path(argv[2]).read_text())[:ALONE_BODIES]]
        print(json.dumps(asyncio.run(alone(Path(argv[1]), bodies))))
    elif mode == "read":
        serve_read(int(argv[1]), Path(argv[2]))
    elif mode == "validate":
        serve_validate(int(argv[1]), Path(argv[2]))
    else:
        print(f"scale_floor: unknown mode {mode!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
