"""Adds the route table to the app, with what its routes share: CORS on every route (browser
clients, preflight included, as Keysat's layer), and on public ones the per-client rate
limits (KEYSMITH_RATE_LIMIT for validate, heartbeat, redeem and recover;
KEYSMITH_WRITE_RATE_LIMIT for the routes that add rows: purchase, machine activate and
deactivate) and the discount-code guard the code routes call (`codeguard`); and Keysat's
`/recover` page for buyers (`recover_page`), limited with /v1/recover.

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
    admin_shop,
    openapi,
    public,
)
from daemon.api.codeguard import CODE_GUARD, CodeGuard
from daemon.api.envelope import rate_limited
from daemon.api.expect import expect_handler
from daemon.api.ops import STORAGE_KEY
from daemon.api.ratelimit import RateLimiter
from daemon.api.recover_page import add_recover_page
from daemon.api.routes import LICENSING, serve
from daemon.api.table import (
    ANSWERED_GROUPS,
    ENDPOINTS,
    WRITE_GROUPS,
    Endpoint,
    Handler,
    RateGroup,
)
from daemon.licensing import answers, wire
from daemon.licensing.service import Licensing
from daemon.settings import Settings

# Keysat's CORS layer (tower-http, origin, methods and headers `Any`) on every route, the
# admin ones too: their bearer key is never sent by a browser on its own, so a foreign page
# gains nothing it could not do without the browser.
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "*",
    "Access-Control-Allow-Headers": "*",
    "Access-Control-Max-Age": "600",
}


def add_licensing_routes(app: web.Application, licensing: Licensing, settings: Settings) -> None:
    """Every route of the table; public ones with CORS, the rate-limited ones limited."""
    app[LICENSING] = licensing
    app[STORAGE_KEY] = licensing.storage
    app[CODE_GUARD] = CodeGuard(licensing, settings)
    reads = RateLimiter(settings.rate_limit_per_minute)
    writes = RateLimiter(settings.write_rate_limit_per_minute)
    paths: dict[str, None] = {}
    for e in ENDPOINTS:
        limiter = writes if e.rate_group in WRITE_GROUPS else reads
        limited = e.rate_group is not None and limiter.enabled
        handler = _route(e, limiter, settings) if limited else _cors(serve(e))
        app.router.add_route(e.method, e.path, handler, expect_handler=expect_handler)
        paths[e.path] = None
    for path in paths:
        app.router.add_route("OPTIONS", path, _preflight, expect_handler=expect_handler)
    # Keysat's buyer page, in /v1/recover's bucket of the same limiter.
    add_recover_page(app, reads, settings)


def _cors(handler: Handler) -> Handler:
    async def with_cors(request: web.Request) -> web.StreamResponse:
        response = await handler(request)
        response.headers["Access-Control-Allow-Origin"] = "*"
        return response

    return with_cors


async def _preflight(_request: web.Request) -> web.Response:
    return web.Response(status=204, headers=CORS_HEADERS)


def _route(e: Endpoint, limiter: RateLimiter, settings: Settings) -> Handler:
    """A rate-limited route: the limit, the route, CORS, in one layer (validate's path)."""
    group = e.rate_group
    assert group is not None
    served = serve(e)

    async def limited(request: web.Request) -> web.StreamResponse:
        address = peers.client_address(request, settings.trusted_proxies)
        wait = limiter.retry_after(group, address)
        response = await served(request) if not wait else _refusal(group, address, wait)
        response.headers["Access-Control-Allow-Origin"] = "*"
        return response

    return limited


def _refusal(group: RateGroup, address: str, wait: int) -> web.StreamResponse:
    message = f"too many {group} requests from {address}"
    if group not in ANSWERED_GROUPS:
        return rate_limited(wait, message)
    said = answers.RateLimited(message=f"{message}; nothing was done. Retry in {wait} s")
    return web.Response(
        body=wire.encode(said),
        content_type="application/json",
        headers={"Retry-After": str(wait)},
    )
