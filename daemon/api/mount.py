"""Adds the route table to the app, with what public routes share: CORS (browser clients,
preflight included), the per-client rate limits (KEYSMITH_RATE_LIMIT for validate, heartbeat,
redeem and recover; KEYSMITH_WRITE_RATE_LIMIT for the routes that add rows: purchase, machine
activate and deactivate) and the discount-code guard the code routes call (`codeguard`).

Imports every handler module so they register, then reads the table: the one place that
knows all of them, and nothing imports this but `app`.
"""

from __future__ import annotations

from aiohttp import web

from daemon import peers
from daemon.api import (  # noqa: F401  (they register into the table)
    admin,
    admin_access,
    admin_catalogue,
    openapi,
    public,
)
from daemon.api.codeguard import CODE_GUARD, CodeGuard
from daemon.api.envelope import rate_limited
from daemon.api.expect import expect_handler
from daemon.api.ops import STORAGE_KEY
from daemon.api.ratelimit import RateLimiter
from daemon.api.routes import LICENSING
from daemon.api.table import ENDPOINTS, WRITE_GROUPS, Endpoint, Handler
from daemon.licensing.service import Licensing
from daemon.settings import Settings

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": "Content-Type",
    "Access-Control-Max-Age": "600",
}


def add_licensing_routes(app: web.Application, licensing: Licensing, settings: Settings) -> None:
    """Every route of the table; public ones with CORS, the rate-limited ones limited."""
    app[LICENSING] = licensing
    app[STORAGE_KEY] = licensing.storage
    app[CODE_GUARD] = CodeGuard(licensing, settings)
    reads = RateLimiter(settings.rate_limit_per_minute)
    writes = RateLimiter(settings.write_rate_limit_per_minute)
    methods: dict[str, list[str]] = {}
    for e in ENDPOINTS:
        handler = e.handler
        limiter = writes if e.rate_group in WRITE_GROUPS else reads
        if e.rate_group is not None and limiter.enabled:
            handler = _limited(handler, e, limiter, settings)
        if e.tag == "public":
            handler = _cors(handler)
            methods.setdefault(e.path, []).append(e.method)
        app.router.add_route(e.method, e.path, handler, expect_handler=expect_handler)
    for path, allowed in methods.items():
        app.router.add_route("OPTIONS", path, _preflight(allowed), expect_handler=expect_handler)


def _cors(handler: Handler) -> Handler:
    async def with_cors(request: web.Request) -> web.StreamResponse:
        response = await handler(request)
        response.headers["Access-Control-Allow-Origin"] = "*"
        return response

    return with_cors


def _preflight(allowed: list[str]) -> Handler:
    headers = {**CORS_HEADERS, "Access-Control-Allow-Methods": ", ".join([*allowed, "OPTIONS"])}

    async def preflight(_request: web.Request) -> web.Response:
        return web.Response(status=204, headers=headers)

    return preflight


def _limited(handler: Handler, e: Endpoint, limiter: RateLimiter, settings: Settings) -> Handler:
    group = e.rate_group
    assert group is not None

    async def limited(request: web.Request) -> web.StreamResponse:
        address = peers.client_address(request, settings.trusted_proxies)
        wait = limiter.retry_after(group, address)
        if wait:
            return rate_limited(wait, f"too many {group} requests from {address}")
        return await handler(request)

    return limited
