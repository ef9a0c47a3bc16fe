"""Admin routes under `/v1/admin/`, all behind `Authorization: Bearer <admin key>`.

Shapes follow Keysat's admin API (DESIGN.md, "Admin shapes"); each handler checks its
fields with `daemon.licensing.inputs` and leaves the rest to the service, which writes one
transaction with an audit row per action.
"""

from __future__ import annotations

import uuid

from aiohttp import web

from daemon.api.routes import (
    Route,
    admin_only,
    answers_errors,
    json_object,
    licensing_of,
    ok_json,
    path_uuid,
)
from daemon.licensing import inputs
from daemon.licensing.errors import BadRequest

MAX_LIST = 1000


def admin_route(handler):  # noqa: ANN001, ANN201 - a decorator stack, typed by its parts
    return answers_errors(admin_only(handler))


# ----- products -----


@admin_route
async def create_product(request: web.Request) -> web.Response:
    body = await json_object(request)
    fields = {
        "slug": inputs.slug(body, "slug", required=True),
        "name": inputs.text(body, "name", required=True),
        "description": inputs.text(body, "description", max_len=inputs.MAX_TEXT, allow_empty=True),
        "price_sats": inputs.integer(body, "price_sats", required=True, maximum=inputs.MAX_SATS),
        "metadata": inputs.json_object(body, "metadata"),
        "entitlements_catalog": inputs.catalog(body, "entitlements_catalog"),
        **_price(body),
    }
    return ok_json(await licensing_of(request).create_product(fields), status=201)


@admin_route
async def list_products(request: web.Request) -> web.Response:
    return ok_json({"products": await licensing_of(request).admin_products()})


@admin_route
async def set_product_active(request: web.Request) -> web.Response:
    product_id = path_uuid(request)
    active = inputs.boolean(await json_object(request), "active", required=True)
    return ok_json(await licensing_of(request).set_product_active(product_id, active))


# ----- policies -----


@admin_route
async def create_policy(request: web.Request) -> web.Response:
    body = await json_object(request)
    fields = {
        "slug": inputs.slug(body, "slug", required=True),
        "name": inputs.text(body, "name", required=True),
        "description": inputs.text(body, "description", max_len=inputs.MAX_TEXT, allow_empty=True),
        "price_sats": inputs.integer(body, "price_sats", maximum=inputs.MAX_SATS),
        "duration_days": inputs.integer(body, "duration_days", minimum=1, maximum=36_500),
        "max_machines": inputs.integer(body, "max_machines", minimum=1, maximum=10_000),
        "is_trial": inputs.boolean(body, "is_trial"),
        "entitlements": inputs.slug_list(body, "entitlements", max_items=255),
        "highlighted": inputs.boolean(body, "highlighted"),
        "sort_order": inputs.integer(body, "sort_order", minimum=-10_000, maximum=10_000),
        "is_default": inputs.boolean(body, "is_default"),
        **_price(body),
    }
    is_public = inputs.boolean(body, "is_public")
    if is_public is not None:
        fields["is_public"] = is_public
    return ok_json(
        await licensing_of(request).create_policy(_product_ref(body), fields), status=201
    )


@admin_route
async def list_policies(request: web.Request) -> web.Response:
    ref = {
        "product_id": _query_uuid(request, "product_id"),
        "product_slug": inputs.slug(dict(request.query), "product_slug"),
    }
    return ok_json({"policies": await licensing_of(request).admin_policies(ref)})


@admin_route
async def set_policy_active(request: web.Request) -> web.Response:
    policy_id = path_uuid(request)
    active = inputs.boolean(await json_object(request), "active", required=True)
    return ok_json(await licensing_of(request).set_policy_active(policy_id, active))


# ----- licenses -----


@admin_route
async def issue_license(request: web.Request) -> web.Response:
    body = await json_object(request)
    issued = await licensing_of(request).issue_license(
        product_slug=inputs.slug(body, "product_slug", required=True),
        policy_slug=inputs.slug(body, "policy_slug"),
        note=inputs.text(body, "note", max_len=inputs.MAX_TEXT, allow_empty=True),
        fingerprint=inputs.text(body, "fingerprint", max_len=512),
        expires_at=inputs.timestamp(body, "expires_at"),
    )
    return ok_json(issued, status=201)


@admin_route
async def list_licenses(request: web.Request) -> web.Response:
    query = dict(request.query)
    licenses = await licensing_of(request).list_licenses(
        product_id=_query_uuid(request, "product_id"),
        status=inputs.text(query, "status", max_len=20),
        search=inputs.text(query, "q", max_len=200),
        limit=inputs.query_int(query, "limit", default=100, minimum=1, maximum=MAX_LIST),
        offset=inputs.query_int(query, "offset", default=0, minimum=0, maximum=10**9),
    )
    return ok_json({"licenses": licenses})


@admin_route
async def search_licenses(request: web.Request) -> web.Response:
    """Keysat's search route: `q` (or `email`) matched against buyer email, note, id, key."""
    query = dict(request.query)
    search = inputs.text(query, "q", max_len=200) or inputs.text(query, "email", max_len=254)
    if search is None:
        raise BadRequest("search needs 'q' (or 'email') in the query string")
    licenses = await licensing_of(request).list_licenses(
        product_id=_query_uuid(request, "product_id"),
        status=None,
        search=search,
        limit=inputs.query_int(query, "limit", default=100, minimum=1, maximum=MAX_LIST),
        offset=0,
    )
    return ok_json({"licenses": licenses})


@admin_route
async def get_license(request: web.Request) -> web.Response:
    return ok_json(await licensing_of(request).get_license(path_uuid(request)))


@admin_route
async def revoke_license(request: web.Request) -> web.Response:
    license_id = path_uuid(request)
    reason = inputs.text(await json_object(request), "reason", max_len=inputs.MAX_TEXT)
    return ok_json(await licensing_of(request).revoke(license_id, reason))


@admin_route
async def suspend_license(request: web.Request) -> web.Response:
    return ok_json(await licensing_of(request).suspend(path_uuid(request)))


@admin_route
async def unsuspend_license(request: web.Request) -> web.Response:
    return ok_json(await licensing_of(request).unsuspend(path_uuid(request)))


# ----- discount codes -----


@admin_route
async def create_code(request: web.Request) -> web.Response:
    body = await json_object(request)
    code = inputs.text(body, "code", required=True, max_len=64)
    if not inputs.SLUG.match(code.lower()):
        raise BadRequest(f"'code' must be {inputs.SLUG_RULE} (any case); got {code!r}")
    fields = {
        "code": code,
        "kind": inputs.text(body, "kind", required=True, max_len=20),
        "amount": inputs.integer(body, "amount", maximum=inputs.MAX_SATS),
        "product_slug": inputs.slug(body, "product_slug"),
        "policy_slug": inputs.slug(body, "policy_slug"),
        "max_redemptions": inputs.integer(body, "max_redemptions", minimum=1, maximum=10**9),
        "expires_at": inputs.timestamp(body, "expires_at"),
        "note": inputs.text(body, "note", max_len=inputs.MAX_TEXT, allow_empty=True),
    }
    return ok_json(await licensing_of(request).create_code(fields), status=201)


@admin_route
async def list_codes(request: web.Request) -> web.Response:
    product_slug = inputs.slug(dict(request.query), "product_slug")
    return ok_json({"discount_codes": await licensing_of(request).list_codes(product_slug)})


@admin_route
async def set_code_active(request: web.Request) -> web.Response:
    code_id = path_uuid(request)
    active = inputs.boolean(await json_object(request), "active", required=True)
    return ok_json(await licensing_of(request).set_code_active(code_id, active))


# ----- machines and audit -----


@admin_route
async def list_machines(request: web.Request) -> web.Response:
    query = dict(request.query)
    machines = await licensing_of(request).list_machines(
        license_id=_query_uuid(request, "license_id"),
        include_inactive=inputs.query_bool(query, "include_inactive"),
        limit=inputs.query_int(query, "limit", default=500, minimum=1, maximum=5000),
    )
    return ok_json({"machines": machines})


@admin_route
async def deactivate_machine(request: web.Request) -> web.Response:
    machine_id = path_uuid(request)
    reason = inputs.text(await json_object(request), "reason", max_len=200)
    machine = await licensing_of(request).admin_deactivate_machine(machine_id, reason)
    return ok_json({"ok": True, "machine": machine})


@admin_route
async def list_audit(request: web.Request) -> web.Response:
    query = dict(request.query)
    entries = await licensing_of(request).audit_entries(
        action=inputs.text(query, "action", max_len=64),
        subject=inputs.text(query, "subject", max_len=128),
        limit=inputs.query_int(query, "limit", default=100, minimum=1, maximum=MAX_LIST),
        before_id=(
            inputs.query_int(query, "before_id", default=0, minimum=1, maximum=2**62)
            if "before_id" in query
            else None
        ),
    )
    return ok_json({"entries": entries})


# ----- helpers -----


def _price(body: dict) -> dict:
    """Optional multi-currency price (migration 0010): currency code + minor units."""
    fields = {}
    currency = inputs.text(body, "price_currency", max_len=3)
    if currency is not None:
        if len(currency) != 3 or not currency.isalpha() or not currency.isupper():
            raise BadRequest("'price_currency' must be a 3-letter upper-case code, e.g. 'USD'")
        fields["price_currency"] = currency
    minor = inputs.integer(body, "price_minor", maximum=inputs.MAX_SATS)
    if minor is not None:
        fields["price_minor"] = minor
    return fields


def _product_ref(body: dict) -> dict:
    product_id = inputs.text(body, "product_id", max_len=36)
    return {"product_id": product_id, "product_slug": inputs.slug(body, "product_slug")}


def _query_uuid(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    if value is None:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError as e:
        raise BadRequest(f"query parameter '{name}' must be a UUID, got {value[:40]!r}") from e


ROUTES: tuple[Route, ...] = (
    ("POST", "/v1/admin/products", create_product),
    ("GET", "/v1/admin/products", list_products),
    ("PATCH", "/v1/admin/products/{id}/active", set_product_active),
    ("POST", "/v1/admin/policies", create_policy),
    ("GET", "/v1/admin/policies", list_policies),
    ("PATCH", "/v1/admin/policies/{id}/active", set_policy_active),
    ("POST", "/v1/admin/licenses", issue_license),
    ("GET", "/v1/admin/licenses", list_licenses),
    # Before /{id}: aiohttp tries routes in order, and "search" is not a license id.
    ("GET", "/v1/admin/licenses/search", search_licenses),
    ("GET", "/v1/admin/licenses/{id}", get_license),
    ("POST", "/v1/admin/licenses/{id}/revoke", revoke_license),
    ("POST", "/v1/admin/licenses/{id}/suspend", suspend_license),
    ("POST", "/v1/admin/licenses/{id}/unsuspend", unsuspend_license),
    ("POST", "/v1/admin/discount-codes", create_code),
    ("GET", "/v1/admin/discount-codes", list_codes),
    ("PATCH", "/v1/admin/discount-codes/{id}/active", set_code_active),
    ("GET", "/v1/admin/machines", list_machines),
    ("POST", "/v1/admin/machines/{id}/deactivate", deactivate_machine),
    ("GET", "/v1/admin/audit", list_audit),
)
