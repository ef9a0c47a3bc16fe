"""The pages for what talks to other systems: webhook endpoints with their deliveries, and
scoped API keys. Every call into licensing goes through `ops`; a refused form comes back
filled in, with the message next to its field. A secret or token is shown once, on the page
the create redirects to, and never again.
"""

from __future__ import annotations

from aiohttp import web

from daemon.console import auth, ops
from daemon.console.web import Page, create_form, licensing_of, render_form_page, row_button

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
    created = session.take("webhook-endpoint")
    service = licensing_of(request)
    endpoints = await ops.webhook_endpoints(service)
    return render_form_page(
        request,
        "webhooks.html",
        session,
        form,
        refused,
        title="Webhooks",
        page="webhooks",
        endpoints=endpoints,
        urls={e["id"]: e["url"] for e in endpoints},
        deliveries=await ops.deliveries(service),
        event_types=ops.EVENT_TYPES,
        event_field=ops.EVENT_FIELD,
        created=created,
        done=DONE.get(request.query.get("done", "")),
    )


async def api_keys(
    request: web.Request,
    session: auth.Session,
    form: dict[str, str],
    refused: ops.Refused | None = None,
) -> web.StreamResponse:
    created = session.take("api-key")
    return render_form_page(
        request,
        "api_keys.html",
        session,
        form,
        refused,
        title="API keys",
        page="api-keys",
        keys=await ops.api_keys(licensing_of(request)),
        roles=ops.ROLES,
        role_writes=ops.ROLE_WRITES,
        scopes=ops.SCOPES,
        created=created,
        done=DONE.get(request.query.get("done", "")),
    )


INTEGRATION_ROUTES: tuple[tuple[str, str, Page], ...] = (
    ("GET", "/webhooks", webhooks),
    (
        "POST",
        "/webhooks",
        create_form(
            ops.create_webhook_endpoint, webhooks, "/webhooks", show_once="webhook-endpoint"
        ),
    ),
    *(
        ("POST", path, row_button(change, webhooks, "/webhooks", done))
        for path, change, done in (
            ("/webhooks/{id}/enable", ops.enable_webhook_endpoint, "enable"),
            ("/webhooks/{id}/disable", ops.disable_webhook_endpoint, "disable"),
            ("/webhooks/{id}/delete", ops.delete_webhook_endpoint, "delete"),
            ("/deliveries/{id}/retry", ops.retry_delivery, "retry"),
        )
    ),
    ("GET", "/api-keys", api_keys),
    (
        "POST",
        "/api-keys",
        create_form(ops.create_api_key, api_keys, "/api-keys", show_once="api-key"),
    ),
    (
        "POST",
        "/api-keys/{id}/revoke",
        row_button(ops.revoke_api_key, api_keys, "/api-keys", "revoke"),
    ),
)
