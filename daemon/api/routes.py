"""What every licensing handler shares: the service on the app, decoding a request's body and
query into the models its table entry names (before the handler runs), answering a model,
turning a `LicensingError` into the JSON error envelope with the right status, and the admin
bearer check (the master key, or an API key with the route's scope). Knows no handler:
`table` lists the routes, `mount` adds them to the app with `serve`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from daemon.api.appkeys import BODY_TIMEOUT_KEY
from daemon.api.envelope import error_response
from daemon.api.table import Endpoint, Handler, Nothing, PemText, RouteHandler, endpoint
from daemon.licensing import wire
from daemon.licensing.access import MASTER, scope_of, token_hash
from daemon.licensing.core import ActorKind, acting_as
from daemon.licensing.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    LicensingError,
    NotFound,
    PaymentNotConfigured,
    Unauthorized,
)
from daemon.licensing.service import Licensing
from daemon.storage import Fault, fault_of

log = logging.getLogger("keysmith.api")

LICENSING = web.AppKey("licensing", Licensing)

# The refused request already waited out SQLite's busy timeout (5 s) for the lock; retrying
# much sooner would most likely meet the same lock.
RETRY_AFTER_BUSY_SECONDS = 5

STATUS_OF = {
    BadRequest: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    PaymentNotConfigured: 503,
}


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


def _answer_error(request: web.Request, error: Exception) -> web.Response:
    """The service's named errors as 4xx envelopes; a database constraint the service did not
    foresee becomes a 409 saying nothing was written (the transaction rolled back), never a
    500; a full disk or a held lock becomes 507 or 503. Anything else is raised again."""
    if isinstance(error, LicensingError):
        return refusal(error)
    if isinstance(error, sqlite3.IntegrityError):
        log.warning(
            "a write was refused by a database constraint; rolled back",
            extra={"path": request.path, "constraint": str(error)},
        )
        return refusal(Conflict(f"the database refused the change ({error}); nothing was written"))
    fault = fault_of(error) if isinstance(error, sqlite3.OperationalError) else None
    if fault is None:
        raise error
    return storage_refusal(fault, error)  # type: ignore[arg-type]  (an OperationalError)


async def check_admin(request: web.Request, scope: str) -> tuple[ActorKind, str | None]:
    """`Authorization: Bearer <admin key or API key>`, compared in constant time: 401 when it is
    missing (or not a bearer token), 403 when the key is wrong, revoked or lacks `scope`, as
    Keysat answers. The token is never logged. Returns who acted, for the audit log: the master
    key by the SHA-256 of the key (Keysat's `actor_hash`; the key stays secret, and a rotated
    key is told apart from its predecessor), an API key by its id."""
    header = request.headers.get("Authorization")
    if header is None:
        raise Unauthorized(
            "admin routes need the header 'Authorization: Bearer <admin key>'; the key is "
            "shown by the StartOS action, or set it with KEYSMITH_ADMIN_API_KEY"
        )
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("the Authorization header must be 'Bearer <admin key>'")
    licensing = licensing_of(request)
    if licensing.admin_key_matches(token):
        return "master_key", token_hash(token)
    found = await licensing.access.scopes_of_token(token)
    if found is None:
        raise Forbidden("the admin key is wrong (or the API key was revoked)")
    key_id, role, scopes = found
    if scope == MASTER:
        raise Forbidden("only the master admin key manages API keys; an API key cannot")
    if scope not in scopes:
        raise Forbidden(f"this API key (role {role}) lacks the scope '{scope}' this route needs")
    return "api_key", key_id


Decoder = Callable[[web.Request], Awaitable[dict[str, Any]]]


def decoder(e: Endpoint) -> Decoder:
    """The route's body and query as its handler's `body=` and `query=` arguments, decoded
    into the models its table entry names, or BadRequest naming the field. What the route
    does not declare (`Nothing`) is refused when sent: a parameter the route would ignore is
    a request the caller believes was honoured. Chosen once per route, not per request."""
    body, query = e.body, e.query

    async def decode(request: web.Request) -> dict[str, Any]:
        # What is undeclared is refused first, then what is declared decoded.
        if query is Nothing and request.query_string:
            wire.parse(Nothing, request.query, from_text=True)
        if body is Nothing and request.body_exists:
            wire.decode(Nothing, await _body(request))
        decoded: dict[str, Any] = {}
        if query is not Nothing:
            decoded["query"] = wire.parse(query, request.query, from_text=True)
        if body is PemText:
            decoded["body"] = _text(await _body(request))
        elif body is not Nothing:
            decoded["body"] = wire.decode(body, await _body(request))
        return decoded

    return decode


def _text(raw: bytes) -> str:
    """A `PemText` body as UTF-8 text, or BadRequest."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the request body is not UTF-8 text; nothing was written") from None


async def _body(request: web.Request) -> bytes:
    """A body that does not arrive within the body timeout is a 408 (a slow client must
    not hold a handler forever). One that has arrived whole (every small client request) is
    taken from the buffer at once: no timer, no read loop; the size bound is aiohttp's."""
    if request.content.is_eof():
        body = request.content.read_nowait()
        if len(body) > request.client_max_size:
            raise web.HTTPRequestEntityTooLarge(request.client_max_size, len(body))
        return body
    try:
        async with asyncio.timeout(request.app[BODY_TIMEOUT_KEY]):
            return await request.read()
    except TimeoutError as e:
        raise web.HTTPRequestTimeout() from e


def serve(e: Endpoint) -> Handler:
    """The route's aiohttp handler: the admin bearer check (admin routes), then the body and
    query decoded, then the handler, its errors answered as envelopes (`_answer_error`)."""
    decode, handler = decoder(e), e.handler
    if e.tag == "public":

        async def public(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request, **await decode(request))
            except (LicensingError, sqlite3.Error) as error:
                return _answer_error(request, error)

        return functools.wraps(handler)(public)
    scope = e.scope or scope_of(e.method, e.path)

    async def admin(request: web.Request) -> web.StreamResponse:
        try:
            with acting_as(*await check_admin(request, scope)):
                return await handler(request, **await decode(request))
        except (LicensingError, sqlite3.Error) as error:
            return _answer_error(request, error)

    return functools.wraps(handler)(admin)


def path_uuid(request: web.Request, name: str = "id") -> str:
    value = request.match_info[name]
    try:
        return str(uuid.UUID(value))
    except ValueError as e:  # Keysat: an id that is no UUID names nothing, so 404
        raise NotFound(f"nothing has the id {value[:40]!r} ('{name}' is a UUID)") from e


def answer(value: object, status: int = 200) -> web.Response:
    return web.Response(body=wire.encode(value), status=status, content_type="application/json")


def admin_endpoint(
    method: str, path: str, summary: str, *, scope: str | None = None, **models_of: Any
) -> Callable[[RouteHandler], RouteHandler]:
    """Register an admin handler (the bearer check runs first, `serve`). The scope an API key
    needs is the route's resource and access (`scope_of`) unless `scope` says."""
    needed = scope or scope_of(method, path)
    return endpoint(method, path, tag="admin", summary=summary, scope=needed, **models_of)


def public_endpoint(
    method: str, path: str, summary: str, **models_of: Any
) -> Callable[[RouteHandler], RouteHandler]:
    """Register a public handler."""
    return endpoint(method, path, tag="public", summary=summary, **models_of)
