"""The pages for what talks to other systems: webhook endpoints with their deliveries, and
scoped API keys. Every call into licensing goes through `ops`; a refused form comes back
filled in, with the message next to its field. A secret or token is shown once, on the page
the create redirects to, and never again.
"""

from __future__ import annotations

from aiohttp import web

from daemon.console import auth, ops
from daemon.console.web import (
    Irreversible,
    Page,
    create_form,
    irreversible,
    licensing_of,
    page_links,
    render_form_page,
    row_button,
    search,
)
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
    created = session.take("webhook-endpoint")
    service = licensing_of(request)
    endpoints = await ops.webhook_endpoints(service)
    (deliveries, total), delivery_error = await search(
        ops.deliveries_page(service, request.query), ([], 0)
    )
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
        deliveries=deliveries,
        rows=page_links(request, len(deliveries), ops.DELIVERY_PAGE, total),
        delivery_error=delivery_error,
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


async def _endpoint_name(service: Licensing, endpoint_id: str) -> str:
    found = [e for e in await ops.webhook_endpoints(service) if e["id"] == endpoint_id]
    if not found:
        raise ops.Refused(None, f"There is no webhook endpoint {endpoint_id}", 404)
    return f"the webhook endpoint {found[0]['url']}"


async def _key_name(service: Licensing, key_id: str) -> str:
    found = [k for k in await ops.api_keys(service) if k["id"] == key_id]
    if not found:
        raise ops.Refused(None, f"There is no API key {key_id}", 404)
    return f"API key '{found[0]['label']}' ({found[0]['role']})"


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
            ("/deliveries/{id}/retry", ops.retry_delivery, "retry"),
        )
    ),
    *irreversible(
        "/webhooks/{id}/delete", ops.delete_webhook_endpoint, webhooks, "/webhooks", "delete",
        Irreversible("Delete", "nothing is sent to it any more, and its deliveries' history is "
                     "deleted with it. This cannot be undone.", "/webhooks", _endpoint_name),
    ),
    ("GET", "/api-keys", api_keys),
    (
        "POST",
        "/api-keys",
        create_form(ops.create_api_key, api_keys, "/api-keys", show_once="api-key"),
    ),
    *irreversible(
        "/api-keys/{id}/revoke", ops.revoke_api_key, api_keys, "/api-keys", "revoke",
        Irreversible("Revoke", "every request made with it is refused from the next one. This "
                     "cannot be undone: a new key has a new token.", "/api-keys", _key_name),
    ),
)  # fmt: skip
