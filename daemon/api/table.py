"""The route table: every licensing route, declared once with its request and answer models.

Handler modules (`public`, `admin`, `openapi`) register into it with `endpoint`; `mount`
adds the table to the app; `openapi` describes it. The body and query models named here are
the only naming of them: the route decodes both before its handler runs (`routes.serve`) and
passes them as the handler's `body=` and `query=` arguments. Imports go one way: handlers
import this module, never each other, and this module imports no handler.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

import msgspec
from aiohttp import web


class Nothing(msgspec.Struct, forbid_unknown_fields=True):
    """The body or query of a route that takes none: whatever is sent is refused by name
    (`routes.serve`), never silently ignored; the handler gets no argument for it."""


class PemText:
    """The body of a route that takes a PEM document as it is, not JSON (Keysat's
    import-issuer-key): the handler's `body` is that text."""


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# A registered handler: the request, then `body=` and `query=` when the route declares them.
RouteHandler = Callable[..., Awaitable[web.StreamResponse]]
Tag = Literal["public", "admin"]
RateGroup = Literal[
    "validate", "heartbeat", "redeem", "recover", "purchase", "activate", "deactivate"
]
# The groups whose requests add rows (licenses, invoices, machines): their own, lower limit.
WRITE_GROUPS: frozenset[RateGroup] = frozenset({"purchase", "activate", "deactivate"})
# The groups Keysat answers 200 `{ok: false, reason: "rate_limited"}` when limited (the
# published clients raise on a 429 there); the others answer 429 with Retry-After.
ANSWERED_GROUPS: frozenset[RateGroup] = frozenset({"validate", "heartbeat"})


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: RouteHandler
    tag: Tag
    summary: str
    body: type = Nothing
    query: type = Nothing
    answer: object = None
    rate_group: RateGroup | None = None
    status: int = 200
    # Admin routes: the scope an API key needs (`<resource>:read|write`, or `master`).
    scope: str | None = None


ENDPOINTS: list[Endpoint] = []


def endpoint(
    method: str,
    path: str,
    *,
    tag: Tag,
    summary: str,
    body: type = Nothing,
    query: type = Nothing,
    answer: object = None,
    rate_group: RateGroup | None = None,
    scope: str | None = None,
) -> Callable[[RouteHandler], RouteHandler]:
    """Register the handler under `method path`; the models say what it reads and answers."""

    def register(handler: RouteHandler) -> RouteHandler:
        ENDPOINTS.append(
            Endpoint(
                method,
                path,
                handler,
                tag,
                summary,
                body,
                query,
                answer,
                rate_group,
                scope=scope,
            )
        )
        return handler

    return register
