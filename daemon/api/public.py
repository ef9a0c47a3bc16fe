"""Public licensing routes, wire-compatible with the published Keysat client.

`POST /v1/validate` answers 200 for every key, good or bad (`ok` + `reason`); only a
request that is not a validate request at all (not JSON, no `key`, wrong types) gets a 400.
"""

from __future__ import annotations

from aiohttp import web

from daemon import __version__
from daemon.api.routes import Route, answers_errors, json_object, licensing_of, ok_json
from daemon.licensing import inputs
from daemon.licensing.errors import BadRequest

MAX_KEY = 4096
MAX_BODY_BYTES = 64 * 1024
MAX_FINGERPRINT = 512


@answers_errors
async def service_info(request: web.Request) -> web.Response:
    return ok_json(
        {
            "service": "keysmith",
            "version": __version__,
            "api": "keysat-compatible v1",
            "key_format": "LIC1",
            "algorithm": "ed25519",
            "public_key_pem": licensing_of(request).public_key_pem,
            "openapi": "/v1/openapi.json",
        }
    )


@answers_errors
async def pubkey(request: web.Request) -> web.Response:
    return ok_json({"public_key_pem": licensing_of(request).public_key_pem, "algorithm": "ed25519"})


@answers_errors
async def list_products(request: web.Request) -> web.Response:
    return ok_json({"products": await licensing_of(request).public_products()})


@answers_errors
async def get_product(request: web.Request) -> web.Response:
    return ok_json(await licensing_of(request).public_product(_slug(request)))


@answers_errors
async def list_policies(request: web.Request) -> web.Response:
    return ok_json(await licensing_of(request).public_policies(_slug(request)))


@answers_errors
async def validate(request: web.Request) -> web.Response:
    body = await json_object(request)
    # Any string is a key to judge (an over-long one is answered bad_format, with 200).
    key = inputs.text(body, "key", required=True, max_len=MAX_BODY_BYTES, allow_empty=True)
    result = await licensing_of(request).validate(
        key,
        product_slug=inputs.text(body, "product_slug", max_len=64),
        fingerprint=inputs.text(body, "fingerprint", max_len=MAX_FINGERPRINT),
        hostname=inputs.text(body, "hostname", max_len=255),
        platform=inputs.text(body, "platform", max_len=255),
    )
    return ok_json(result)


@answers_errors
async def activate(request: web.Request) -> web.Response:
    body = await json_object(request)
    key, fingerprint = _key_and_fingerprint(body)
    return ok_json(
        await licensing_of(request).activate(
            key,
            fingerprint,
            hostname=inputs.text(body, "hostname", max_len=255),
            platform=inputs.text(body, "platform", max_len=255),
        )
    )


@answers_errors
async def heartbeat(request: web.Request) -> web.Response:
    body = await json_object(request)
    key, fingerprint = _key_and_fingerprint(body)
    return ok_json(await licensing_of(request).heartbeat(key, fingerprint))


@answers_errors
async def deactivate(request: web.Request) -> web.Response:
    body = await json_object(request)
    key, fingerprint = _key_and_fingerprint(body)
    reason = inputs.text(body, "reason", max_len=200)
    return ok_json(await licensing_of(request).deactivate(key, fingerprint, reason))


@answers_errors
async def redeem(request: web.Request) -> web.Response:
    body = await json_object(request)
    product = inputs.slug(body, "product", required=True)
    code = inputs.text(body, "code", required=True, max_len=64)
    return ok_json(
        await licensing_of(request).redeem(
            product,
            code,
            buyer_email=inputs.text(body, "buyer_email", max_len=254),
            buyer_note=inputs.text(body, "buyer_note", max_len=inputs.MAX_TEXT),
        )
    )


@answers_errors
async def purchase(request: web.Request) -> web.Response:
    return ok_json(licensing_of(request).start_purchase())


def _slug(request: web.Request) -> str:
    slug = request.match_info["slug"]
    if not inputs.SLUG.match(slug):
        raise BadRequest(f"'{slug[:64]}' is not a product slug: {inputs.SLUG_RULE}")
    return slug


def _key_and_fingerprint(body: dict) -> tuple[str, str]:
    key = inputs.text(body, "key", required=True, max_len=MAX_KEY)
    fingerprint = inputs.text(body, "fingerprint", required=True, max_len=MAX_FINGERPRINT)
    return key, fingerprint


ROUTES: tuple[Route, ...] = (
    ("GET", "/", service_info),
    ("GET", "/v1/pubkey", pubkey),
    ("GET", "/v1/products", list_products),
    ("GET", "/v1/products/{slug}", get_product),
    ("GET", "/v1/products/{slug}/policies", list_policies),
    ("POST", "/v1/validate", validate),
    ("POST", "/v1/machines/activate", activate),
    ("POST", "/v1/machines/heartbeat", heartbeat),
    ("POST", "/v1/machines/deactivate", deactivate),
    ("POST", "/v1/redeem", redeem),
    ("POST", "/v1/purchase", purchase),
    ("GET", "/v1/purchase/{invoice_id}", purchase),
)
