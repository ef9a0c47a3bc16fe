"""Admin routes for scoped API keys (`/v1/admin/api-keys`, master key only) and webhooks
(`/v1/admin/webhook-endpoints`, `/v1/admin/webhooks/deliveries`), in Keysat's shapes."""

from __future__ import annotations

import msgspec
from aiohttp import web

from daemon.api.routes import admin_endpoint, answer, licensing_of, path_uuid, read
from daemon.licensing import answers, models
from daemon.licensing.access import MASTER


class ApiKeys(msgspec.Struct):
    api_keys: list[answers.ApiKey]


@admin_endpoint(
    "POST",
    "/v1/admin/api-keys",
    "Create a scoped API key; its token is in this answer only (master key only)",
    scope=MASTER,
    body=models.ApiKeyCreate,
    answer=answers.ApiKeyCreated,
)
async def create_api_key(request: web.Request) -> web.Response:
    body = await read(request, models.ApiKeyCreate)
    return answer(await licensing_of(request).create_api_key(body))


@admin_endpoint(
    "GET",
    "/v1/admin/api-keys",
    "API keys, without their tokens (master key only)",
    scope=MASTER,
    answer=ApiKeys,
)
async def list_api_keys(request: web.Request) -> web.Response:
    return answer(ApiKeys(await licensing_of(request).list_api_keys()))


@admin_endpoint(
    "DELETE",
    "/v1/admin/api-keys/{id}",
    "Revoke an API key, effective from the next request (master key only)",
    scope=MASTER,
    answer=answers.ApiKeyRevoked,
)
async def revoke_api_key(request: web.Request) -> web.Response:
    return answer(await licensing_of(request).revoke_api_key(path_uuid(request)))
