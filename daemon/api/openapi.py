"""`GET /v1/openapi.json`: an OpenAPI 3.1 description of every route the daemon serves.

Written by hand as data, next to the route tables it describes; a test compares it with
the routes actually registered on the running app, so the two cannot drift apart.
"""

from __future__ import annotations

import copy
from typing import Any

from aiohttp import web

from daemon import __version__
from daemon.api.routes import Route
from daemon.licensing.service import REASONS

ADMIN = "admin"
PUBLIC = "public"
OPS = "ops"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: tuple[str, ...] = (), **props: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = list(required)
    return schema


STR = {"type": "string"}
INT = {"type": "integer"}
BOOL = {"type": "boolean"}
TIME = {"type": ["string", "null"], "format": "date-time"}
UUID = {"type": "string", "format": "uuid"}
SLUG = {"type": "string", "pattern": "^[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?$"}
STRS = {"type": "array", "items": STR}
UNIX_OR_TIME = {"oneOf": [{"type": "integer"}, {"type": "string", "format": "date-time"}]}
ACTIVE_BODY = _obj(("active",), active=BOOL)

SCHEMAS: dict[str, Any] = {
    "Error": _obj(("ok", "error", "message"), ok={"const": False}, error=STR, message=STR),
    "Product": _obj(
        (),
        id=UUID,
        slug=SLUG,
        name=STR,
        description=STR,
        price_sats=INT,
        price_currency=STR,
        price_minor=INT,
        metadata={"type": "object"},
        entitlements_catalog={"type": "array", "items": _ref("EntitlementDef")},
        active=BOOL,
        created_at=TIME,
        updated_at=TIME,
    ),
    "EntitlementDef": _obj(("slug", "name"), slug=SLUG, name=STR, description=STR),
    "PublicPolicy": _obj(
        (),
        slug=SLUG,
        name=STR,
        description=STR,
        price_sats=INT,
        duration_seconds=INT,
        max_machines=INT,
        is_trial=BOOL,
        entitlements=STRS,
        highlighted=BOOL,
        is_recurring=BOOL,
        renewal_period_days=INT,
        trial_days=INT,
    ),
    "Policy": {
        "allOf": [
            _ref("PublicPolicy"),
            _obj(
                (),
                id=UUID,
                product_id=UUID,
                duration_days={"type": ["integer", "null"]},
                is_public=BOOL,
                active=BOOL,
                sort_order=INT,
                is_default=BOOL,
                price_currency=STR,
                price_minor=INT,
                created_at=TIME,
            ),
        ]
    },
    "License": _obj(
        (),
        id=UUID,
        product_id=UUID,
        product_slug=SLUG,
        policy_id={"type": ["string", "null"]},
        policy_slug={"type": ["string", "null"]},
        license_key=STR,
        status={"enum": ["active", "revoked", "suspended"]},
        issued_at=TIME,
        expires_at=TIME,
        fingerprint_bound=BOOL,
        fingerprint_hash={"type": ["string", "null"]},
        note=STR,
        revoked_at=TIME,
        revoke_reason={"type": ["string", "null"]},
        suspended_at=TIME,
        is_trial=BOOL,
        entitlements=STRS,
        max_machines=INT,
    ),
    "DiscountCode": _obj(
        (),
        id=UUID,
        code=STR,
        kind={"enum": ["percent", "fixed_sats", "free_license", "set_price"]},
        amount=INT,
        product_id={"type": ["string", "null"]},
        product_slug={"type": ["string", "null"]},
        policy_id={"type": ["string", "null"]},
        policy_slug={"type": ["string", "null"]},
        max_redemptions={"type": ["integer", "null"]},
        redemptions=INT,
        expires_at=TIME,
        active=BOOL,
        note=STR,
        created_at=TIME,
    ),
    "Machine": _obj(
        (),
        id=UUID,
        license_id=UUID,
        fingerprint_hash=STR,
        hostname={"type": ["string", "null"]},
        platform={"type": ["string", "null"]},
        first_seen_at=TIME,
        last_seen_at=TIME,
        active=BOOL,
        deactivated_at=TIME,
        deactivate_reason={"type": ["string", "null"]},
    ),
    "ValidateRequest": _obj(
        ("key",), key=STR, product_slug=STR, fingerprint=STR, hostname=STR, platform=STR
    ),
    "ValidateResponse": _obj(
        ("ok",),
        ok=BOOL,
        reason={"enum": list(REASONS)},
        license_id=UUID,
        product_id=UUID,
        product_slug=SLUG,
        issued_at=TIME,
        expires_at=TIME,
        in_grace_period=BOOL,
        is_trial=BOOL,
        entitlements=STRS,
        status=STR,
        machine_id={"type": ["string", "null"]},
        max_machines=INT,
    ),
    "MachineRequest": _obj(
        ("key", "fingerprint"),
        key=STR,
        fingerprint=STR,
        hostname=STR,
        platform=STR,
        reason=STR,
    ),
    "MachineResponse": _obj(
        ("ok",),
        ok=BOOL,
        reason={"type": ["string", "null"]},
        machine_id={"type": ["string", "null"]},
        active_count=INT,
        max_machines=INT,
    ),
    "RedeemRequest": _obj(
        ("product", "code"), product=SLUG, code=STR, buyer_email=STR, buyer_note=STR
    ),
    "RedeemResponse": _obj(
        ("license_id", "license_key", "invoice_id", "redemption_id"),
        license_id=UUID,
        license_key=STR,
        invoice_id=UUID,
        redemption_id=UUID,
    ),
    "AuditEntry": _obj(
        (),
        id=INT,
        created_at=TIME,
        actor=STR,
        action=STR,
        subject={"type": ["string", "null"]},
        detail={"type": "object"},
    ),
}


def _op(
    summary: str,
    audience: str,
    answer: dict[str, Any] | None = None,
    *,
    body: dict[str, Any] | None = None,
    status: int = 200,
    errors: tuple[int, ...] = (),
    params: tuple[dict[str, Any], ...] = (),
) -> dict[str, Any]:
    responses: dict[str, Any] = {
        str(status): {
            "description": "success",
            "content": {"application/json": {"schema": answer or {"type": "object"}}},
        }
    }
    all_errors = set(errors)
    if body is not None:
        all_errors |= {400, 408, 413}
    if audience == ADMIN:
        all_errors.add(401)
    for code in sorted(all_errors):
        responses[str(code)] = _error(code)
    operation: dict[str, Any] = {"summary": summary, "tags": [audience], "responses": responses}
    if audience == ADMIN:
        operation["security"] = [{"adminKey": []}]
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body}},
        }
    if params:
        operation["parameters"] = list(params)
    return operation


def _error(code: int) -> dict[str, Any]:
    return {
        "description": ERROR_TEXT[code],
        "content": {"application/json": {"schema": _ref("Error")}},
    }


def _add_storage_errors(paths: dict[str, dict[str, Any]]) -> None:
    """Every POST and PATCH may write, so may meet a full disk or a lock held elsewhere."""
    for operations in paths.values():
        for method, operation in operations.items():
            if method in ("post", "patch"):
                responses = {str(code): _error(code) for code in (503, 507)}
                responses.update(operation["responses"])
                operation["responses"] = dict(sorted(responses.items()))


ERROR_TEXT = {
    400: "malformed request: the message names the field",
    401: "missing or wrong admin key",
    404: "no such product, policy, license, code or machine",
    408: "the request body did not arrive within the body timeout; nothing was applied",
    409: "the current state forbids this (duplicate, already revoked, code used up)",
    413: "request body too large",
    503: (
        "no payment provider is configured, the daemon is in safe mode, or the database was "
        "locked by another process past the busy timeout (with Retry-After); nothing was applied"
    ),
    507: "the server's disk is full; nothing was written",
}


def _path(name: str, schema: dict[str, Any] = UUID) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _query(name: str, schema: dict[str, Any] = STR) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


def _list_of(key: str, item: str) -> dict[str, Any]:
    return _obj((key,), **{key: {"type": "array", "items": _ref(item)}})


PRODUCT_BODY = _obj(
    ("slug", "name", "price_sats"),
    slug=SLUG,
    name=STR,
    description=STR,
    price_sats=INT,
    metadata={"type": "object"},
    price_currency=STR,
    price_minor=INT,
    entitlements_catalog={"type": "array", "items": _ref("EntitlementDef")},
)
POLICY_BODY = _obj(
    ("slug", "name"),
    product_slug=SLUG,
    product_id=UUID,
    slug=SLUG,
    name=STR,
    description=STR,
    price_sats=INT,
    duration_days=INT,
    max_machines=INT,
    is_trial=BOOL,
    entitlements=STRS,
    is_public=BOOL,
    highlighted=BOOL,
    sort_order=INT,
    is_default=BOOL,
    price_currency=STR,
    price_minor=INT,
)
ISSUE_BODY = _obj(
    ("product_slug",),
    product_slug=SLUG,
    policy_slug=SLUG,
    note=STR,
    fingerprint=STR,
    expires_at=UNIX_OR_TIME,
)
ISSUED = _obj(
    ("license_id", "product_id", "license_key", "issued_at"),
    license_id=UUID,
    product_id=UUID,
    license_key=STR,
    issued_at=TIME,
    expires_at=TIME,
)
CODE_BODY = _obj(
    ("code", "kind"),
    code=STR,
    kind=STR,
    amount=INT,
    product_slug=SLUG,
    policy_slug=SLUG,
    max_redemptions=INT,
    expires_at=UNIX_OR_TIME,
    note=STR,
)
SLUG_PARAM = _path("slug", SLUG)
ID_PARAM = _path("id")

PATHS: dict[str, dict[str, Any]] = {
    "/": {"get": _op("Service info and the issuer public key", PUBLIC)},
    "/healthz": {
        "get": _op(
            "Lifecycle state; 200 when serving, 503 otherwise (including while database writes "
            "are refused: status 'degraded', with the cause)",
            OPS,
            errors=(503,),
        )
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics (text exposition format)",
            "tags": [OPS],
            "responses": {
                "200": {"description": "metrics", "content": {"text/plain": {"schema": STR}}}
            },
        }
    },
    "/v1/openapi.json": {"get": _op("This document", PUBLIC)},
    "/v1/pubkey": {
        "get": _op(
            "The issuer public key (PEM)",
            PUBLIC,
            _obj(("public_key_pem",), public_key_pem=STR, algorithm=STR),
        )
    },
    "/v1/products": {"get": _op("Active products", PUBLIC, _list_of("products", "Product"))},
    "/v1/products/{slug}": {
        "get": _op(
            "One active product", PUBLIC, _ref("Product"), errors=(400, 404), params=(SLUG_PARAM,)
        )
    },
    "/v1/products/{slug}/policies": {
        "get": _op(
            "Public, active policies (tiers) of a product",
            PUBLIC,
            _obj(
                ("product", "policies"),
                product={"type": "object"},
                policies={"type": "array", "items": _ref("PublicPolicy")},
            ),
            errors=(400, 404),
            params=(SLUG_PARAM,),
        )
    },
    "/v1/validate": {
        "post": _op(
            "Validate a license key; always 200 with ok/reason for any key string",
            PUBLIC,
            _ref("ValidateResponse"),
            body=_ref("ValidateRequest"),
        )
    },
    "/v1/machines/activate": {
        "post": _op(
            "Take a seat for a machine (seat limit from the license's policy)",
            PUBLIC,
            _ref("MachineResponse"),
            body=_ref("MachineRequest"),
            errors=(404,),
        )
    },
    "/v1/machines/heartbeat": {
        "post": _op(
            "Refresh an activated machine",
            PUBLIC,
            _ref("MachineResponse"),
            body=_ref("MachineRequest"),
            errors=(404,),
        )
    },
    "/v1/machines/deactivate": {
        "post": _op(
            "Free a machine's seat",
            PUBLIC,
            _ref("MachineResponse"),
            body=_ref("MachineRequest"),
            errors=(404,),
        )
    },
    "/v1/redeem": {
        "post": _op(
            "Redeem a free-license code for a new license",
            PUBLIC,
            _ref("RedeemResponse"),
            body=_ref("RedeemRequest"),
            errors=(404, 409),
        )
    },
    "/v1/purchase": {
        "post": _op(
            "Start a purchase: answers 503 payment_not_configured (no payment provider)",
            PUBLIC,
            body={"type": "object"},
            errors=(503,),
        )
    },
    "/v1/purchase/{invoice_id}": {
        "get": _op(
            "Poll a purchase: answers 503 payment_not_configured (no payment provider)",
            PUBLIC,
            errors=(503,),
            params=(_path("invoice_id", STR),),
        )
    },
    "/v1/admin/products": {
        "post": _op(
            "Create a product", ADMIN, _ref("Product"), body=PRODUCT_BODY, status=201, errors=(409,)
        ),
        "get": _op("All products, active or not", ADMIN, _list_of("products", "Product")),
    },
    "/v1/admin/products/{id}/active": {
        "patch": _op(
            "Activate or deactivate a product",
            ADMIN,
            _ref("Product"),
            body=ACTIVE_BODY,
            errors=(404,),
            params=(ID_PARAM,),
        )
    },
    "/v1/admin/policies": {
        "post": _op(
            "Create a policy for a product",
            ADMIN,
            _ref("Policy"),
            body=POLICY_BODY,
            status=201,
            errors=(404, 409),
        ),
        "get": _op(
            "Policies, optionally of one product",
            ADMIN,
            _list_of("policies", "Policy"),
            errors=(400, 404),
            params=(_query("product_id", UUID), _query("product_slug", SLUG)),
        ),
    },
    "/v1/admin/policies/{id}/active": {
        "patch": _op(
            "Activate or deactivate a policy",
            ADMIN,
            _ref("Policy"),
            body=ACTIVE_BODY,
            errors=(404,),
            params=(ID_PARAM,),
        )
    },
    "/v1/admin/licenses": {
        "post": _op(
            "Issue a license by hand", ADMIN, ISSUED, body=ISSUE_BODY, status=201, errors=(404,)
        ),
        "get": _op(
            "List or search licenses",
            ADMIN,
            _list_of("licenses", "License"),
            errors=(400,),
            params=(
                _query("product_id", UUID),
                _query("status"),
                _query("q"),
                _query("limit", INT),
                _query("offset", INT),
            ),
        ),
    },
    "/v1/admin/licenses/search": {
        "get": _op(
            "Search licenses by buyer email, note, id or key",
            ADMIN,
            _list_of("licenses", "License"),
            errors=(400,),
            params=(_query("q"), _query("email"), _query("product_id", UUID), _query("limit", INT)),
        )
    },
    "/v1/admin/licenses/{id}": {
        "get": _op("One license", ADMIN, _ref("License"), errors=(400, 404), params=(ID_PARAM,))
    },
    "/v1/admin/licenses/{id}/revoke": {
        "post": _op(
            "Revoke a license; 404 if already revoked",
            ADMIN,
            _ref("License"),
            body=_obj((), reason=STR),
            errors=(404,),
            params=(ID_PARAM,),
        )
    },
    "/v1/admin/licenses/{id}/suspend": {
        "post": _op(
            "Suspend an active license",
            ADMIN,
            _ref("License"),
            errors=(400, 404, 409),
            params=(ID_PARAM,),
        )
    },
    "/v1/admin/licenses/{id}/unsuspend": {
        "post": _op(
            "Unsuspend a suspended license",
            ADMIN,
            _ref("License"),
            errors=(400, 404, 409),
            params=(ID_PARAM,),
        )
    },
    "/v1/admin/discount-codes": {
        "post": _op(
            "Create a discount or free-license code",
            ADMIN,
            _ref("DiscountCode"),
            body=CODE_BODY,
            status=201,
            errors=(404, 409),
        ),
        "get": _op(
            "List discount codes",
            ADMIN,
            _list_of("discount_codes", "DiscountCode"),
            errors=(400, 404),
            params=(_query("product_slug", SLUG),),
        ),
    },
    "/v1/admin/discount-codes/{id}/active": {
        "patch": _op(
            "Enable or disable a code",
            ADMIN,
            _ref("DiscountCode"),
            body=ACTIVE_BODY,
            errors=(404,),
            params=(ID_PARAM,),
        )
    },
    "/v1/admin/machines": {
        "get": _op(
            "List machines",
            ADMIN,
            _list_of("machines", "Machine"),
            errors=(400,),
            params=(
                _query("license_id", UUID),
                _query("include_inactive", BOOL),
                _query("limit", INT),
            ),
        )
    },
    "/v1/admin/machines/{id}/deactivate": {
        "post": _op(
            "Force a machine off its license",
            ADMIN,
            _obj(("ok", "machine"), ok=BOOL, machine=_ref("Machine")),
            body=_obj((), reason=STR),
            errors=(404, 409),
            params=(ID_PARAM,),
        )
    },
    "/v1/admin/audit": {
        "get": _op(
            "Audit log, newest first",
            ADMIN,
            _list_of("entries", "AuditEntry"),
            errors=(400,),
            params=(
                _query("action"),
                _query("subject"),
                _query("limit", INT),
                _query("before_id", INT),
            ),
        )
    },
}


def document() -> dict[str, Any]:
    """A fresh copy each time, so a caller can never edit the module's tables."""
    built = copy.deepcopy(
        {
            "openapi": "3.1.0",
            "info": {
                "title": "Keysmith licensing API",
                "version": __version__,
                "description": (
                    "Keysat-compatible licensing API. Errors are "
                    '{"ok": false, "error": CODE, "message": TEXT}. Admin routes need '
                    "'Authorization: Bearer <admin key>'."
                ),
            },
            "paths": PATHS,
            "components": {
                "schemas": SCHEMAS,
                "securitySchemes": {"adminKey": {"type": "http", "scheme": "bearer"}},
            },
        }
    )
    _add_storage_errors(built["paths"])
    return built


_SERVED = document()


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(_SERVED)


ROUTES: tuple[Route, ...] = (("GET", "/v1/openapi.json", openapi_json),)
