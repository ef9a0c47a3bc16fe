"""Admin routes for the catalogue: products (their entitlements catalog too) and policies.
Same rules as `admin`: bearer key, Keysat's shapes and statuses.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from daemon.api.routes import admin_endpoint, answer, licensing_of, path_uuid
from daemon.licensing import answers, models


class Products(msgspec.Struct):
    products: list[answers.Product]


class Policies(msgspec.Struct):
    policies: list[answers.Policy]


# ----- products -----


@admin_endpoint(
    "POST",
    "/v1/admin/products",
    "Create a product",
    body=models.ProductCreate,
    answer=answers.Product,
)
async def create_product(request: web.Request, body: models.ProductCreate) -> web.Response:
    return answer(await licensing_of(request).catalogue.create_product(body))


@admin_endpoint("GET", "/v1/admin/products", "Every product", answer=Products)
async def list_products(request: web.Request) -> web.Response:
    return answer(Products(await licensing_of(request).catalogue.admin_products()))


@admin_endpoint(
    "PATCH",
    "/v1/admin/products/{id}",
    "Edit a product (its entitlements catalog too)",
    body=models.ProductUpdate,
    answer=answers.Product,
)
async def update_product(request: web.Request, body: models.ProductUpdate) -> web.Response:
    product_id = path_uuid(request)
    return answer(await licensing_of(request).catalogue.update_product(product_id, body))


@admin_endpoint(
    "PATCH",
    "/v1/admin/products/{id}/active",
    "Sell a product, or stop",
    body=models.ActiveToggle,
    answer=answers.ActiveSet,
)
async def set_product_active(request: web.Request, body: models.ActiveToggle) -> web.Response:
    product_id = path_uuid(request)
    await licensing_of(request).catalogue.set_product_active(product_id, body.active)
    return answer(answers.ActiveSet(active=body.active))


@admin_endpoint(
    "DELETE",
    "/v1/admin/products/{id}",
    "Delete a product nothing was sold under",
    query=models.DeleteQuery,
    answer=answers.ProductDeleted,
)
async def delete_product(request: web.Request, query: models.DeleteQuery) -> web.Response:
    del query  # decoding it refused `force`; there is nothing else in it
    product_id = path_uuid(request)
    return answer(await licensing_of(request).catalogue.delete_product(product_id))


# ----- policies -----


@admin_endpoint(
    "POST",
    "/v1/admin/policies",
    "Create a policy (a tier of a product)",
    body=models.PolicyCreate,
    answer=answers.Policy,
)
async def create_policy(request: web.Request, body: models.PolicyCreate) -> web.Response:
    return answer(await licensing_of(request).catalogue.create_policy(body))


@admin_endpoint(
    "GET",
    "/v1/admin/policies",
    "Policies, of one product or all",
    query=models.PolicyQuery,
    answer=Policies,
)
async def list_policies(request: web.Request, query: models.PolicyQuery) -> web.Response:
    return answer(Policies(await licensing_of(request).catalogue.admin_policies(query)))


@admin_endpoint(
    "PATCH",
    "/v1/admin/policies/{id}",
    "Edit a policy; public, active: false archives",
    body=models.PolicyUpdate,
    answer=answers.Policy,
)
async def update_policy(request: web.Request, body: models.PolicyUpdate) -> web.Response:
    policy_id = path_uuid(request)
    return answer(await licensing_of(request).catalogue.update_policy(policy_id, body))


@admin_endpoint(
    "DELETE",
    "/v1/admin/policies/{id}",
    "Delete a policy nothing was issued under",
    query=models.DeleteQuery,
    answer=answers.PolicyDeleted,
)
async def delete_policy(request: web.Request, query: models.DeleteQuery) -> web.Response:
    del query  # decoding it refused `force`; there is nothing else in it
    policy_id = path_uuid(request)
    return answer(await licensing_of(request).catalogue.delete_policy(policy_id))


@admin_endpoint(
    "PATCH",
    "/v1/admin/policies/{id}/public",
    "Show a policy to buyers, or hide it",
    body=models.PublicToggle,
    answer=answers.PublicSet,
)
async def set_policy_public(request: web.Request, body: models.PublicToggle) -> web.Response:
    policy_id = path_uuid(request)
    return answer(await licensing_of(request).catalogue.set_policy_public(policy_id, body.public))


@admin_endpoint(
    "PATCH",
    "/v1/admin/policies/{id}/archived",
    "Archive a policy (kept, no longer sold)",
    body=models.ArchiveToggle,
    answer=answers.ArchivedSet,
)
async def set_policy_archived(request: web.Request, body: models.ArchiveToggle) -> web.Response:
    policy_id = path_uuid(request)
    return answer(
        await licensing_of(request).catalogue.set_policy_archived(policy_id, body.archived)
    )


@admin_endpoint(
    "PATCH",
    "/v1/admin/policies/{id}/active",
    "Archive a policy, or restore it",
    body=models.ActiveToggle,
    answer=answers.ActiveSet,
)
async def set_policy_active(request: web.Request, body: models.ActiveToggle) -> web.Response:
    policy_id = path_uuid(request)
    await licensing_of(request).catalogue.set_policy_active(policy_id, body.active)
    return answer(answers.ActiveSet(active=body.active))
