"""What every licensing handler shares: the service on the app, reading a request into its
model, answering a model, turning a `LicensingError` into the JSON error envelope with the
right status, and the admin bearer check (the master key, or an API key with the route's
scope). Knows no handler: `table` lists the routes, `mount` adds them to the app.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import uuid
from typing import Any, TypeVar

from aiohttp import web

from daemon.api.app import BODY_TIMEOUT_KEY
from daemon.api.envelope import error_response
from daemon.api.table import Handler, Nothing, endpoint
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
T = TypeVar("T")

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


async def read(request: web.Request, model: type[T]) -> T:
    """The body as `model`, or BadRequest naming the field."""
    return wire.decode(model, await _body(request))


async def read_text(request: web.Request) -> str:
    """The body as UTF-8 text (a `PemText` route's), or BadRequest."""
    try:
        return (await _body(request)).decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the request body is not UTF-8 text; nothing was written") from None


async def _body(request: web.Request) -> bytes:
    """A body that does not arrive within the body timeout is a 408 (a slow client must
    not hold a handler forever)."""
    try:
        async with asyncio.timeout(request.app[BODY_TIMEOUT_KEY]):
            return await request.read()
    except TimeoutError as e:
        raise web.HTTPRequestTimeout() from e


def read_query(request: web.Request, model: type[T]) -> T:
    return wire.parse(model, request.query, from_text=True)


async def refuse_undeclared(request: web.Request, body: type, query: type) -> None:
    """A route that takes no body (or no query) refuses whatever is sent there, by name:
    a parameter the route would ignore is a request the caller believes was honoured."""
    if query is Nothing:
        read_query(request, Nothing)
    if body is Nothing:
        await read(request, Nothing)


def _declared(handler: Handler, models_of: dict[str, Any]) -> Handler:
    body, query = models_of.get("body", Nothing), models_of.get("query", Nothing)

    @functools.wraps(handler)
    async def declared(request: web.Request) -> web.StreamResponse:
        await refuse_undeclared(request, body, query)
        return await handler(request)

    return declared


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
) -> Any:
    """Register an admin handler: the bearer check first, errors as envelopes. The scope an
    API key needs is the route's resource and access (`scope_of`) unless `scope` says."""
    needed = scope or scope_of(method, path)

    def wrap(handler: Handler) -> Handler:
        declared = _declared(handler, models_of)

        @functools.wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            with acting_as(*await check_admin(request, needed)):
                return await declared(request)

        return endpoint(method, path, tag="admin", summary=summary, scope=needed, **models_of)(
            answers_errors(guarded)
        )

    return wrap


def public_endpoint(method: str, path: str, summary: str, **models_of: Any) -> Any:
    """Register a public handler, errors as envelopes."""

    def wrap(handler: Handler) -> Handler:
        return endpoint(method, path, tag="public", summary=summary, **models_of)(
            answers_errors(_declared(handler, models_of))
        )

    return wrap
