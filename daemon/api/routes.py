"""Mounts the licensing API (public, admin, OpenAPI) on the daemon's aiohttp app.

Also the small pieces every licensing handler shares: reading a JSON object body, turning a
`LicensingError` into the JSON error envelope with the right status, and the admin bearer
check. Handlers live in `public.py` and `admin.py`; each module lists its routes in ROUTES,
and `openapi.py` describes every one of them.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import sqlite3
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from daemon.api.app import BODY_TIMEOUT_KEY
from daemon.api.envelope import error_response
from daemon.api.ops import STORAGE_KEY
from daemon.licensing.errors import (
    BadRequest,
    Conflict,
    LicensingError,
    NotFound,
    PaymentNotConfigured,
    Unauthorized,
)
from daemon.licensing.service import Licensing
from daemon.storage import Fault, fault_of

log = logging.getLogger("keysmith.api")

LICENSING = web.AppKey("licensing", Licensing)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Route = tuple[str, str, Handler]

# The refused request already waited out SQLite's busy timeout (5 s) for the lock; retrying
# much sooner would most likely meet the same lock.
RETRY_AFTER_BUSY_SECONDS = 5

STATUS_OF = {
    BadRequest: 400,
    Unauthorized: 401,
    NotFound: 404,
    Conflict: 409,
    PaymentNotConfigured: 503,
}


def add_licensing_routes(app: web.Application, licensing: Licensing) -> None:
    """Every public and admin licensing route, plus `GET /` and `GET /v1/openapi.json`."""
    from daemon.api import admin, openapi, public
    from daemon.api.expect import expect_handler

    app[LICENSING] = licensing
    app[STORAGE_KEY] = licensing.storage
    for method, path, handler in (*public.ROUTES, *admin.ROUTES, *openapi.ROUTES):
        app.router.add_route(method, path, handler, expect_handler=expect_handler)


def licensing_of(request: web.Request) -> Licensing:
    return request.app[LICENSING]


def refusal(error: LicensingError) -> web.Response:
    status = STATUS_OF.get(type(error), 400)
    response = error_response(status, error.code, error.message)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="keysmith-admin"'
    return response


def storage_refusal(fault: Fault, error: sqlite3.Error) -> web.Response:
    """507 for a full disk, 503 with Retry-After for a lock held past the busy timeout."""
    if fault is Fault.DISK_FULL:
        return error_response(
            507,
            fault.value,
            f"the server's disk is full, so the request was not applied; nothing was written "
            f"(SQLite: {error}). Retry once the operator has freed space",
        )
    response = error_response(
        503,
        fault.value,
        f"the database was locked by another process for longer than the busy timeout, so the "
        f"request was not applied; nothing was written (SQLite: {error}). Retry in "
        f"{RETRY_AFTER_BUSY_SECONDS} s",
    )
    response.headers["Retry-After"] = str(RETRY_AFTER_BUSY_SECONDS)
    return response


def answers_errors(handler: Handler) -> Handler:
    """Turn the service's named errors into 4xx envelopes; a database constraint the
    service did not foresee becomes a 409 saying nothing was written (the transaction
    rolled back), never a 500; a full disk or a held lock becomes 507 or 503."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except LicensingError as error:
            return refusal(error)
        except sqlite3.IntegrityError as error:
            log.warning(
                "a write was refused by a database constraint; rolled back",
                extra={"path": request.path, "constraint": str(error)},
            )
            return refusal(
                Conflict(f"the database refused the change ({error}); nothing was written")
            )
        except sqlite3.OperationalError as error:
            fault = fault_of(error)
            if fault is None:
                raise
            return storage_refusal(fault, error)

    return wrapped


def admin_only(handler: Handler) -> Handler:
    """Require `Authorization: Bearer <admin key>`, compared in constant time."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        header = request.headers.get("Authorization")
        if header is None:
            return refusal(
                Unauthorized(
                    "admin routes need the header 'Authorization: Bearer <admin key>'; the key is "
                    "shown by the StartOS action, or set it with KEYSMITH_ADMIN_API_KEY"
                )
            )
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return refusal(Unauthorized("the Authorization header must be 'Bearer <admin key>'"))
        if not licensing_of(request).admin_key_matches(token.strip()):
            return refusal(Unauthorized("the admin key is wrong"))
        return await handler(request)

    wrapped.admin_only = True  # type: ignore[attr-defined]  # read by the OpenAPI test
    return wrapped


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or BadRequest saying what is wrong with it.
    An empty body counts as `{}` (routes whose fields are all optional). A body that does not
    arrive within the body timeout is a 408 (a slow client must not hold a handler forever)."""
    try:
        async with asyncio.timeout(request.app[BODY_TIMEOUT_KEY]):
            raw = await request.read()
    except TimeoutError as e:
        raise web.HTTPRequestTimeout() from e
    if not raw.strip():
        return {}
    try:
        # Decode first: json.loads on bytes would also guess UTF-16/32, which JSON APIs
        # (RFC 8259) do not speak.
        body = json.loads(raw.decode("utf-8"), parse_constant=_not_json)
    except UnicodeDecodeError as e:
        raise BadRequest("the request body is not UTF-8 text") from e
    except RecursionError as e:
        raise BadRequest("the request body nests JSON too deeply") from e
    except ValueError as e:
        raise BadRequest(f"the request body is not valid JSON: {e}") from e
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body


def _not_json(constant: str) -> None:
    # Python's decoder accepts NaN and Infinity; JSON (RFC 8259) and SQLite's json_valid do not.
    raise ValueError(f"{constant} is not a JSON value")


def path_uuid(request: web.Request, name: str = "id") -> str:
    value = request.match_info[name]
    try:
        return str(uuid.UUID(value))
    except ValueError as e:
        raise BadRequest(f"'{name}' in the path must be a UUID, got {value[:40]!r}") from e


def ok_json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)
