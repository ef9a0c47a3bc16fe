"""Assembles the aiohttp application: middlewares, ops routes and, when serving, the licensing API.

One middleware does, for every request (outermost first):
- counts it in flight, so shutdown can wait for it;
- request metrics, labelled by the route template (never the raw path: a path holding a license
  id must not create a new time series per license);
- the JSON error envelope `{"ok": false, "error": CODE, "message": TEXT}` for 404/405/413 and for
  any unhandled exception (logged with its type, never echoing request bodies);
- safe mode: every route except /healthz, /metrics and the console (/admin/, which shows the
  cause and the upgrade history, and writes nothing then) answers 503 with the cause.
One layer, not four: each layer is a coroutine and a wrapper per request on every route.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web

from daemon import metrics
from daemon.api import ops
from daemon.api.appkeys import BODY_TIMEOUT_KEY, IN_FLIGHT_KEY, LIFECYCLE_KEY, InFlight
from daemon.api.envelope import error_response
from daemon.api.expect import expect_handler
from daemon.api.table import Handler
from daemon.console import PREFIX as CONSOLE_PATH
from daemon.settings import DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_TIMEOUT, Settings
from daemon.status import SERVING, Lifecycle

log = logging.getLogger("keysmith.http")

# Keysat's requests are small JSON documents; anything larger is a mistake or an attack.
MAX_BODY_BYTES = 64 * 1024
# After a refusal that left body bytes unread, aiohttp keeps reading (and dropping) them for this
# long so the client sees the answer rather than a reset; 64 KB takes far less on any real link.
LINGER_SECONDS = 2.0
OPS_PATHS = frozenset({"/healthz", "/metrics"})
NO_ROUTE = "no-route"
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
    503: "unavailable",
}


# nginx's convention for "the client closed the connection first"; it is no server error.
CLIENT_CLOSED_REQUEST = 499


def create_app(
    lifecycle: Lifecycle,
    licensing: object | None = None,
    *,
    header_timeout: float = DEFAULT_HEADER_TIMEOUT,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    console: Settings | None = None,
) -> web.Application:
    """The application for this boot; the licensing routes are added only when serving.

    `header_timeout` bounds the wait for a complete request head. aiohttp's keep-alive timer
    does exactly that: it runs from the moment a connection opens (and from each answer) and
    closes the connection if no complete request has arrived by then, however many bytes
    trickled in; so it is also how long an idle kept-alive connection stays open.
    `body_timeout` bounds reading the body (`routes.json_object`): 408, then the connection
    is closed after at most LINGER_SECONDS more.
    `console`: the daemon's settings, for the operator's console (/admin/; None leaves it out)
    and the API's rate limits and trusted proxies (None: the defaults).
    """
    app = web.Application(
        client_max_size=MAX_BODY_BYTES,
        middlewares=[_middleware],
        handler_args={"keepalive_timeout": header_timeout, "lingering_time": LINGER_SECONDS},
    )
    app[LIFECYCLE_KEY] = lifecycle
    app[IN_FLIGHT_KEY] = InFlight()
    app[BODY_TIMEOUT_KEY] = body_timeout
    ops.add_ops_routes(app, lifecycle)
    if licensing is not None:
        from daemon.api.mount import add_licensing_routes

        add_licensing_routes(app, licensing, console or Settings())
    if console is not None:
        from daemon.console.pages import add_console_routes

        add_console_routes(app, lifecycle, licensing, console)
    # Last, so it sees only what no other route took. `[\s\S]`, not `.`: a path with an encoded
    # newline (`/v1/products/%0A`) must land here too, not in aiohttp's own text answers.
    app.router.add_route(
        "*", r"/{path:[\s\S]*}", _no_route, expect_handler=expect_handler, name=NO_ROUTE
    )
    return app


async def _no_route(request: web.Request) -> web.StreamResponse:
    """The 404 or 405 for a request no route takes. aiohttp would answer these itself, before
    any middleware or our `Expect:` handler (a text 500 for an `Expect:` that is not UTF-8);
    raised here they get the JSON envelope like every other refusal."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource.name != NO_ROUTE:
            _match, methods = await resource.resolve(request)
            allowed |= methods
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()


def _route_label(request: web.Request) -> str:
    route = request.match_info.route
    label = _LABELS.get(route)
    if label is not None:
        return label
    resource = route.resource if route is not None else None
    if resource is None:  # aiohttp's own per-request route for a request it refused
        return "unmatched"
    label = _LABELS[route] = "unmatched" if resource.name == NO_ROUTE else resource.canonical
    return label


# A registered route's label, worked out on its first request: the app's routes are few and
# fixed (aiohttp's per-request system routes are never kept).
_LABELS: dict[object, str] = {}


@web.middleware
async def _middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    in_flight = request.app[IN_FLIGHT_KEY]
    in_flight.enter()
    started = time.perf_counter()
    status = 500
    try:
        response = await _answered(request, handler)
        status = response.status
        if in_flight.draining:
            response.force_close()  # shutting down: no keep-alive, no next request
        return response
    except web.HTTPException as e:  # a redirect, or an answer already in the envelope
        status = e.status
        raise
    finally:
        in_flight.leave()
        method = request.method if request.method in _KNOWN_METHODS else "other"
        metrics.record_http(_route_label(request), method, status, time.perf_counter() - started)


async def _answered(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The handler's answer (or safe mode's refusal), every error in the JSON envelope."""
    try:
        refused = _safe_mode_refusal(request)
        return refused if refused is not None else await handler(request)
    except web.HTTPException as e:
        if e.status < 400 or e.content_type == "application/json":
            raise
        code = _ERROR_CODES.get(e.status, "error")
        response = error_response(e.status, code, _http_error_message(request, e))
        if "Allow" in e.headers:
            response.headers["Allow"] = e.headers["Allow"]
        if e.status == 408:
            response.force_close()  # the rest of a late body must not be read as a new request
        return response
    except ConnectionResetError:
        # The client hung up (mid-body, or before the answer): nothing to answer, not our fault.
        # Answered here, not re-raised: aiohttp would log the exception again, with a traceback,
        # for every client that hangs up. The answer is never sent; it only carries the status
        # for the metrics.
        log.info(
            "the client closed the connection before the request was answered",
            extra={"route": _route_label(request), "method": request.method},
        )
        return web.Response(status=CLIENT_CLOSED_REQUEST)
    except Exception as e:
        log.error(
            "unhandled error while answering a request; nothing was committed by it",
            extra={
                "route": _route_label(request),
                "method": request.method,
                "error_type": type(e).__name__,
            },
            exc_info=True,
        )
        return error_response(500, "internal", "internal error; the request was not applied")


def _http_error_message(request: web.Request, e: web.HTTPException) -> str:
    if e.status == 404:
        return f"no route for {request.method} {request.path}"
    if e.status == 405:
        allowed = e.headers.get("Allow", "")
        return f"{request.method} is not allowed on {request.path}; allowed: {allowed}"
    if e.status == 413:
        return f"request body larger than {MAX_BODY_BYTES} bytes"
    if e.status == 408:
        return (
            f"the request body did not arrive within {request.app[BODY_TIMEOUT_KEY]:g} s; "
            "nothing was applied. Send the whole request at once"
        )
    return e.reason


def _is_console(path: str) -> bool:
    return path == CONSOLE_PATH or path.startswith(CONSOLE_PATH + "/")


def _safe_mode_refusal(request: web.Request) -> web.Response | None:
    """None while serving, and for the routes safe mode serves; else the 503 with the cause."""
    lifecycle = request.app[LIFECYCLE_KEY]
    if (
        (lifecycle.state == SERVING and not lifecycle.safe_mode)
        or request.path in OPS_PATHS
        or _is_console(request.path)
    ):
        return None
    if not lifecycle.safe_mode:  # the moment between listening and serving
        return error_response(
            503,
            "unavailable",
            f"Keysmith is {lifecycle.state}; retry shortly",
            state=lifecycle.state,
        )
    cause = lifecycle.cause or {}
    return error_response(
        503,
        "safe_mode",
        f"Keysmith is in safe mode and serves only /healthz and /metrics: "
        f"{cause.get('message', 'see /healthz')}",
        state=lifecycle.state,
        remedy=cause.get("remedy"),
    )
