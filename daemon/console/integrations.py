"""The pages for what talks to other systems: webhook endpoints with their deliveries, and
scoped API keys. Every call into licensing goes through `ops`; a refused form comes back
filled in, with the message next to its field. A secret or token is shown once, on the page
the create redirects to, and never again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from daemon.console import PREFIX, auth, ops
from daemon.console.seller import form_state
from daemon.console.web import Page, licensing_of, render, see

if TYPE_CHECKING:
    from daemon.licensing.service import Licensing

DONE = {
    "enable": "Webhook endpoint enabled: its pending deliveries resume.",
    "disable": "Webhook endpoint disabled: nothing is sent to it until you enable it.",
    "delete": "Webhook endpoint deleted, with its deliveries.",
    "retry": "Delivery queued again: it is sent within seconds.",
    "revoke": "API key revoked: it is refused from its next request.",
}


async def webhooks(
    request: web.Request,
    session: auth.Session,
    form: dict[str, str],
    refused: ops.Refused | None = None,
) -> web.StreamResponse:
    created, session.webhook_created = session.webhook_created, None
    service = licensing_of(request)
    endpoints = await ops.webhook_endpoints(service)
    return render(
        request,
        "webhooks.html",
        status=refused.status if refused else 200,
        session=session,
        title="Webhooks",
        page="webhooks",
        endpoints=endpoints,
        urls={e["id"]: e["url"] for e in endpoints},
        deliveries=await ops.deliveries(service),
        event_types=ops.EVENT_TYPES,
        event_field=ops.EVENT_FIELD,
        created=created,
        done=DONE.get(request.query.get("done", "")),
        **form_state(form, refused),
    )


async def create_webhook_endpoint(
    request: web.Request, session: auth.Session, form: dict[str, str]
) -> web.StreamResponse:
    try:
        session.webhook_created = await ops.create_webhook_endpoint(licensing_of(request), form)
    except ops.Refused as refused:
        return await webhooks(request, session, form, refused)
    return see(f"{PREFIX}/webhooks")


async def api_keys(
    request: web.Request,
    session: auth.Session,
    form: dict[str, str],
    refused: ops.Refused | None = None,
) -> web.StreamResponse:
    created, session.api_key_created = session.api_key_created, None
    return render(
        request,
        "api_keys.html",
        status=refused.status if refused else 200,
        session=session,
        title="API keys",
        page="api-keys",
        keys=await ops.api_keys(licensing_of(request)),
        roles=ops.ROLES,
        created=created,
        done=DONE.get(request.query.get("done", "")),
        **form_state(form, refused),
    )


async def create_api_key(
    request: web.Request, session: auth.Session, form: dict[str, str]
) -> web.StreamResponse:
    try:
        session.api_key_created = await ops.create_api_key(licensing_of(request), form)
    except ops.Refused as refused:
        return await api_keys(request, session, form, refused)
    return see(f"{PREFIX}/api-keys")


def _change(
    change: Callable[[Licensing, str], Awaitable[None]], page: Page, path: str, done: str
) -> Page:
    """A button on a row: the change, then back to its page with what happened."""

    async def handler(
        request: web.Request, session: auth.Session, form: dict[str, str]
    ) -> web.StreamResponse:
        try:
            await change(licensing_of(request), request.match_info["id"])
        except ops.Refused as refused:
            return await page(request, session, {}, refused)
        return see(f"{PREFIX}{path}?done={done}")

    return handler


INTEGRATION_ROUTES: tuple[tuple[str, str, Page], ...] = (
    ("GET", "/webhooks", webhooks),
    ("POST", "/webhooks", create_webhook_endpoint),
    (
        "POST",
        "/webhooks/{id}/enable",
        _change(ops.enable_webhook_endpoint, webhooks, "/webhooks", "enable"),
    ),
    (
        "POST",
        "/webhooks/{id}/disable",
        _change(ops.disable_webhook_endpoint, webhooks, "/webhooks", "disable"),
    ),
    (
        "POST",
        "/webhooks/{id}/delete",
        _change(ops.delete_webhook_endpoint, webhooks, "/webhooks", "delete"),
    ),
    (
        "POST",
        "/deliveries/{id}/retry",
        _change(ops.retry_delivery, webhooks, "/webhooks", "retry"),
    ),
    ("GET", "/api-keys", api_keys),
    ("POST", "/api-keys", create_api_key),
    ("POST", "/api-keys/{id}/revoke", _change(ops.revoke_api_key, api_keys, "/api-keys", "revoke")),
)
