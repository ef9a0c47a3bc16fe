"""Admin routes for scoped API keys (`/v1/admin/api-keys`, master key only) and webhooks
(`/v1/admin/webhook-endpoints`, `/v1/admin/webhook-deliveries`), in Keysat's shapes."""

from __future__ import annotations

import msgspec
from aiohttp import web

from daemon.api.routes import admin_endpoint, answer, licensing_of, path_uuid
from daemon.licensing import answers, integrations, models
from daemon.licensing.access import MASTER


class ApiKeys(msgspec.Struct):
    api_keys: list[integrations.ApiKey]


@admin_endpoint(
    "POST",
    "/v1/admin/api-keys",
    "Create a scoped API key; its token is in this answer only (master key only)",
    scope=MASTER,
    body=integrations.ApiKeyCreate,
    answer=integrations.ApiKeyCreated,
)
async def create_api_key(request: web.Request, body: integrations.ApiKeyCreate) -> web.Response:
    return answer(await licensing_of(request).access.create_api_key(body))


@admin_endpoint(
    "GET",
    "/v1/admin/api-keys",
    "API keys, without their tokens (master key only)",
    scope=MASTER,
    answer=ApiKeys,
)
async def list_api_keys(request: web.Request) -> web.Response:
    return answer(ApiKeys(await licensing_of(request).access.list_api_keys()))


@admin_endpoint(
    "DELETE",
    "/v1/admin/api-keys/{id}",
    "Revoke an API key, effective from the next request; revoking it again changes nothing "
    "(master key only)",
    scope=MASTER,
    answer=(integrations.ApiKeyRevoked, integrations.ApiKeyAlreadyRevoked),
)
async def revoke_api_key(request: web.Request) -> web.Response:
    return answer(await licensing_of(request).access.revoke_api_key(path_uuid(request)))


# ----- webhooks -----


class WebhookEndpoints(msgspec.Struct):
    endpoints: list[integrations.WebhookEndpoint]


class Deliveries(msgspec.Struct):
    deliveries: list[integrations.Delivery]


@admin_endpoint(
    "POST",
    "/v1/admin/webhook-endpoints",
    "Add a webhook endpoint (every event unless `event_types` says); its secret (generated when "
    "not given) is in this answer only",
    body=integrations.WebhookEndpointCreate,
    answer=integrations.WebhookEndpointCreated,
)
async def create_webhook_endpoint(
    request: web.Request, body: integrations.WebhookEndpointCreate
) -> web.Response:
    return answer(await licensing_of(request).outbox.create_webhook_endpoint(body))


@admin_endpoint(
    "GET",
    "/v1/admin/webhook-endpoints",
    "Webhook endpoints, newest first, without their secrets",
    answer=WebhookEndpoints,
)
async def list_webhook_endpoints(request: web.Request) -> web.Response:
    return answer(WebhookEndpoints(await licensing_of(request).outbox.list_webhook_endpoints()))


@admin_endpoint(
    "PATCH",
    "/v1/admin/webhook-endpoints/{id}/active",
    "Enable an endpoint (its pending deliveries resume) or disable it (nothing is sent to it "
    "and no new event is queued for it)",
    body=models.ActiveToggle,
    answer=integrations.WebhookEndpointSet,
)
async def set_webhook_endpoint_active(
    request: web.Request, body: models.ActiveToggle
) -> web.Response:
    endpoint_id = path_uuid(request)
    return answer(await licensing_of(request).outbox.set_webhook_active(endpoint_id, body.active))


@admin_endpoint(
    "DELETE",
    "/v1/admin/webhook-endpoints/{id}",
    "Delete an endpoint with its deliveries and their log",
    answer=answers.Deleted,
)
async def delete_webhook_endpoint(request: web.Request) -> web.Response:
    return answer(await licensing_of(request).outbox.delete_webhook_endpoint(path_uuid(request)))


@admin_endpoint(
    "GET",
    "/v1/admin/webhook-deliveries",
    "Webhook deliveries, newest event first, each with its log of attempts",
    query=integrations.DeliveryQuery,
    answer=Deliveries,
)
async def list_deliveries(request: web.Request, query: integrations.DeliveryQuery) -> web.Response:
    return answer(Deliveries(await licensing_of(request).outbox.list_deliveries(query)))


@admin_endpoint(
    "POST",
    "/v1/admin/webhook-deliveries/{id}/retry",
    "Send a delivery again now (same delivery id), its attempts counted afresh",
    answer=integrations.Delivery,
)
async def retry_delivery(request: web.Request) -> web.Response:
    return answer(await licensing_of(request).outbox.retry_delivery(path_uuid(request)))
