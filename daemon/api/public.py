"""Public licensing routes, wire-compatible with the published Keysat client.

`POST /v1/validate` answers 200 for every key, good or bad (`ok` + `reason`); only a
request that is not a validate request at all (not JSON, no `key`, wrong types, unknown
fields) gets a 400.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from daemon import __version__
from daemon.api.codeguard import code_refusal
from daemon.api.routes import (
    answer,
    licensing_of,
    path_uuid,
    public_endpoint,
)
from daemon.licensing import answers, inputs, keys, models
from daemon.licensing.errors import BadRequest


class ServiceInfo(msgspec.Struct):
    service: str
    version: str
    # Keysat's fields: the operator's display name, the key's algorithm and format version.
    operator: str | None
    public_key_pem: str
    key_algorithm: str
    key_format_version: int
    api: str
    key_format: str
    openapi: str


class PublicKey(msgspec.Struct):
    """`/v1/pubkey` as Keysat answers it."""

    public_key_pem: str
    algorithm: str


class IssuerKey(msgspec.Struct):
    """`/v1/issuer/public-key` as Keysat answers it."""

    public_key_pem: str
    key_algorithm: str
    key_format_version: int


class ProductList(msgspec.Struct):
    products: list[answers.Product]


@public_endpoint("GET", "/", "The service, its key format and public key", answer=ServiceInfo)
async def service_info(request: web.Request) -> web.Response:
    licensing = licensing_of(request)
    return answer(
        ServiceInfo(
            service="keysmith",
            version=__version__,
            operator=await licensing.operator.operator_name(),
            public_key_pem=licensing.public_key_pem,
            key_algorithm="ed25519",
            key_format_version=keys.VERSION_V2,
            api="keysat-compatible v1",
            key_format="LIC1",
            openapi="/v1/openapi.json",
        )
    )


@public_endpoint("GET", "/v1/pubkey", "The issuer's Ed25519 public key (PEM)", answer=PublicKey)
async def pubkey(request: web.Request) -> web.Response:
    return answer(PublicKey(licensing_of(request).public_key_pem, "ed25519"))


@public_endpoint("GET", "/v1/products", "Active products", answer=ProductList)
async def list_products(request: web.Request) -> web.Response:
    return answer(ProductList(await licensing_of(request).catalogue.public_products()))


@public_endpoint("GET", "/v1/products/{slug}", "One active product", answer=answers.Product)
async def get_product(request: web.Request) -> web.Response:
    return answer(await licensing_of(request).catalogue.public_product(_slug(request)))


@public_endpoint(
    "GET",
    "/v1/products/{slug}/policies",
    "A product's public policies",
    answer=answers.PublicPolicies,
)
async def list_policies(request: web.Request) -> web.Response:
    return answer(await licensing_of(request).catalogue.public_policies(_slug(request)))


@public_endpoint(
    "POST",
    "/v1/validate",
    "Validate a key (200 for every key: ok or a reason)",
    body=models.ValidateRequest,
    answer=(answers.Valid, answers.Refusal, answers.RateLimited),
    rate_group="validate",
)
async def validate(request: web.Request, body: models.ValidateRequest) -> web.Response:
    return answer(await licensing_of(request).validation.validate(body))


@public_endpoint(
    "POST",
    "/v1/machines/activate",
    "Take a seat for a machine (unlimited seats stop at the server's ceiling: `seat_ceiling`)",
    body=models.ActivateRequest,
    answer=answers.SeatAnswer,
    rate_group="activate",
)
async def activate(request: web.Request, body: models.ActivateRequest) -> web.Response:
    return answer(await licensing_of(request).validation.activate(body))


@public_endpoint(
    "POST",
    "/v1/machines/heartbeat",
    "A machine is still running",
    body=models.HeartbeatRequest,
    answer=(answers.SeatAnswer, answers.RateLimited),
    rate_group="heartbeat",
)
async def heartbeat(request: web.Request, body: models.HeartbeatRequest) -> web.Response:
    return answer(await licensing_of(request).validation.heartbeat(body))


@public_endpoint(
    "POST",
    "/v1/machines/deactivate",
    "Free a machine's seat",
    body=models.DeactivateRequest,
    answer=answers.SeatAnswer,
    rate_group="deactivate",
)
async def deactivate(request: web.Request, body: models.DeactivateRequest) -> web.Response:
    return answer(await licensing_of(request).validation.deactivate(body))


@public_endpoint(
    "POST",
    "/v1/redeem",
    "Redeem a free-license code",
    body=models.RedeemRequest,
    answer=answers.Redeemed,
    rate_group="redeem",
)
async def redeem(request: web.Request, body: models.RedeemRequest) -> web.Response:
    if (refused := await code_refusal(request, body.code)) is not None:
        return refused
    return answer(await licensing_of(request).codes.redeem(body))


@public_endpoint(
    "POST",
    "/v1/purchase",
    "Buy a license: free ones are issued at once; paid ones need a "
    "payment provider (503 payment_not_configured)",
    body=models.PurchaseRequest,
    answer=answers.Purchase,
    rate_group="purchase",
)
async def purchase(request: web.Request, body: models.PurchaseRequest) -> web.Response:
    if (refused := await code_refusal(request, body.code)) is not None:
        return refused
    return answer(await licensing_of(request).purchases.purchase(body))


@public_endpoint(
    "GET",
    "/v1/purchase/{invoice_id}",
    "A purchase's invoice and, once settled, its key",
    answer=answers.PurchaseStatus,
)
async def purchase_status(request: web.Request) -> web.Response:
    invoice_id = path_uuid(request, "invoice_id")
    return answer(await licensing_of(request).purchases.purchase_status(invoice_id))


@public_endpoint(
    "POST",
    "/v1/recover",
    "The key of an invoice, for its buyer's email (any case)",
    body=models.RecoverRequest,
    answer=answers.Recovered,
    rate_group="recover",
)
async def recover(request: web.Request, body: models.RecoverRequest) -> web.Response:
    return answer(await licensing_of(request).purchases.recover(body))


@public_endpoint(
    "GET",
    "/v1/discount-codes/preview",
    "What a code takes off a product's price (uses nothing)",
    query=models.CodePreview,
    answer=answers.CodePreviewAnswer,
)
async def preview_code(request: web.Request, query: models.CodePreview) -> web.Response:
    if (refused := await code_refusal(request, query.code)) is not None:
        return refused
    return answer(await licensing_of(request).codes.preview_code(query))


@public_endpoint(
    "GET", "/v1/issuer/public-key", "The issuer's Ed25519 public key (PEM)", answer=IssuerKey
)
async def issuer_public_key(request: web.Request) -> web.Response:
    return answer(IssuerKey(licensing_of(request).public_key_pem, "ed25519", keys.VERSION_V2))


def _slug(request: web.Request) -> str:
    slug = request.match_info["slug"]
    if not inputs.SLUG.match(slug):
        raise BadRequest(f"'{slug[:64]}' is not a product slug: {inputs.SLUG_RULE}")
    return slug
