"""Public licensing routes, wire-compatible with the published Keysat client.

`POST /v1/validate` answers 200 for every key, good or bad (`ok` + `reason`); only a
request that is not a validate request at all (not JSON, no `key`, wrong types, unknown
fields) gets a 400.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from daemon import __version__
from daemon.api.routes import answer, answers_errors, licensing_of, path_uuid, read
from daemon.api.table import endpoint
from daemon.licensing import answers, inputs, models
from daemon.licensing.errors import BadRequest


class ServiceInfo(msgspec.Struct):
    service: str
    version: str
    api: str
    key_format: str
    algorithm: str
    public_key_pem: str
    openapi: str


class PublicKey(msgspec.Struct):
    public_key_pem: str
    algorithm: str


class ProductList(msgspec.Struct):
    products: list[answers.Product]


def _public(method: str, path: str, summary: str, **models_of: object):
    def wrap(handler):  # noqa: ANN001
        return endpoint(method, path, tag="public", summary=summary, **models_of)(
            answers_errors(handler)
        )

    return wrap


@_public("GET", "/", "The service, its key format and public key", answer=ServiceInfo)
async def service_info(request: web.Request) -> web.Response:
    pem = licensing_of(request).public_key_pem
    return answer(
        ServiceInfo(
            "keysmith",
            __version__,
            "keysat-compatible v1",
            "LIC1",
            "ed25519",
            pem,
            "/v1/openapi.json",
        )
    )


@_public("GET", "/v1/pubkey", "The issuer's Ed25519 public key (PEM)", answer=PublicKey)
async def pubkey(request: web.Request) -> web.Response:
    return answer(PublicKey(licensing_of(request).public_key_pem, "ed25519"))


@_public("GET", "/v1/products", "Active products", answer=ProductList)
async def list_products(request: web.Request) -> web.Response:
    return answer(ProductList(await licensing_of(request).public_products()))


@_public("GET", "/v1/products/{slug}", "One active product", answer=answers.Product)
async def get_product(request: web.Request) -> web.Response:
    return answer(await licensing_of(request).public_product(_slug(request)))


@_public(
    "GET",
    "/v1/products/{slug}/policies",
    "A product's public policies",
    answer=answers.PublicPolicies,
)
async def list_policies(request: web.Request) -> web.Response:
    return answer(await licensing_of(request).public_policies(_slug(request)))


@_public(
    "POST",
    "/v1/validate",
    "Validate a key (200 for every key: ok or a reason)",
    body=models.ValidateRequest,
    answer=(answers.Valid, answers.Refusal),
    rate_group="validate",
)
async def validate(request: web.Request) -> web.Response:
    body = await read(request, models.ValidateRequest)
    return answer(await licensing_of(request).validate(body))


@_public(
    "POST",
    "/v1/machines/activate",
    "Take a seat for a machine",
    body=models.ActivateRequest,
    answer=answers.SeatAnswer,
)
async def activate(request: web.Request) -> web.Response:
    body = await read(request, models.ActivateRequest)
    return answer(await licensing_of(request).activate(body))


@_public(
    "POST",
    "/v1/machines/heartbeat",
    "A machine is still running",
    body=models.HeartbeatRequest,
    answer=answers.SeatAnswer,
    rate_group="heartbeat",
)
async def heartbeat(request: web.Request) -> web.Response:
    body = await read(request, models.HeartbeatRequest)
    return answer(await licensing_of(request).heartbeat(body))


@_public(
    "POST",
    "/v1/machines/deactivate",
    "Free a machine's seat",
    body=models.DeactivateRequest,
    answer=answers.SeatAnswer,
)
async def deactivate(request: web.Request) -> web.Response:
    body = await read(request, models.DeactivateRequest)
    return answer(await licensing_of(request).deactivate(body))


@_public(
    "POST",
    "/v1/redeem",
    "Redeem a free-license code",
    body=models.RedeemRequest,
    answer=answers.Redeemed,
    rate_group="redeem",
)
async def redeem(request: web.Request) -> web.Response:
    body = await read(request, models.RedeemRequest)
    return answer(await licensing_of(request).redeem(body))


@_public(
    "POST",
    "/v1/purchase",
    "Buy a license: free ones are issued at once; paid ones need a "
    "payment provider (503 payment_not_configured)",
    body=models.PurchaseRequest,
    answer=answers.Purchase,
)
async def purchase(request: web.Request) -> web.Response:
    body = await read(request, models.PurchaseRequest)
    return answer(await licensing_of(request).purchase(body))


@_public(
    "GET",
    "/v1/purchase/{invoice_id}",
    "A purchase's invoice and, once settled, its key",
    answer=answers.PurchaseStatus,
)
async def purchase_status(request: web.Request) -> web.Response:
    invoice_id = path_uuid(request, "invoice_id")
    return answer(await licensing_of(request).purchase_status(invoice_id))


@_public(
    "POST",
    "/v1/recover",
    "The key of an invoice, for its buyer's email (any case)",
    body=models.RecoverRequest,
    answer=answers.Recovered,
    rate_group="recover",
)
async def recover(request: web.Request) -> web.Response:
    body = await read(request, models.RecoverRequest)
    return answer(await licensing_of(request).recover(body))


def _slug(request: web.Request) -> str:
    slug = request.match_info["slug"]
    if not inputs.SLUG.match(slug):
        raise BadRequest(f"'{slug[:64]}' is not a product slug: {inputs.SLUG_RULE}")
    return slug
