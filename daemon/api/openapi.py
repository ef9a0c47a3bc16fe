"""`GET /v1/openapi.json`: the OpenAPI 3.1 document, generated from the route table.

Each operation's request body, query parameters and answer come from the models the handler
reads and answers with (`daemon.licensing.models` / `answers`, via msgspec's JSON Schema), so
the document cannot disagree with what the server accepts. Only the ops routes, served in
every mode outside the table, and the buyers' HTML page `/recover` (its form is
RecoverRequest's fields) are described here by hand.
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec
from aiohttp import web

from daemon import __version__
from daemon.api.envelope import error_response
from daemon.api.recover_page import PATH as RECOVER_PAGE
from daemon.api.routes import public_endpoint
from daemon.api.table import ANSWERED_GROUPS, ENDPOINTS, Endpoint, Nothing, PemText
from daemon.licensing import models
from daemon.licensing.events import PAYLOAD_OF

REF = "#/components/schemas/{name}"
# What describes no JSON: no answer model, or a route that takes no body.
_NONE = (None, Nothing, PemText)
_ERROR = {
    "type": "object",
    "properties": {
        "ok": {"const": False},
        "error": {"type": "string"},
        "message": {"type": "string"},
    },
    "required": ["ok", "error", "message"],
}
_OPS = {
    "/healthz": "The daemon's state (200 serving, 503 otherwise)",
    "/metrics": "Prometheus metrics",
}


@functools.cache
def document() -> dict[str, Any]:
    kinds: list[Any] = []
    for e in ENDPOINTS:
        kinds.extend(kind for kind in (e.body, *_each(e.answer)) if kind not in _NONE)
    kinds.extend(e.query for e in ENDPOINTS if e.query is not Nothing)
    kinds.extend(PAYLOAD_OF.values())
    schemas, components = msgspec.json.schema_components(kinds, ref_template=REF)
    found = dict(zip(map(id, kinds), schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for e in ENDPOINTS:
        paths.setdefault(e.path, {})[e.method.lower()] = _operation(e, found, components)
    for path, summary in _OPS.items():
        paths[path] = {
            "get": {
                "tags": ["ops"],
                "summary": summary,
                "operationId": path.strip("/"),
                "responses": {"200": {"description": summary}},
            }
        }
    paths[RECOVER_PAGE] = _recover_page(found[id(models.RecoverRequest)])
    components["Error"] = _ERROR
    webhooks = {name: _webhook(name, found[id(kind)]) for name, kind in PAYLOAD_OF.items()}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Keysmith", "version": __version__},
        "paths": paths,
        "webhooks": webhooks,
        "components": {
            "schemas": components,
            "securitySchemes": {"adminKey": {"type": "http", "scheme": "bearer"}},
        },
    }


def _recover_page(form: dict[str, Any]) -> dict[str, Any]:
    """Keysat's buyer page: HTML, its form posted url-encoded with /v1/recover's fields."""
    html = {"text/html": {"schema": {"type": "string"}}}

    def page(description: str) -> dict[str, Any]:
        return {"description": description, "content": html}

    return {
        "get": {
            "tags": ["pages"],
            "summary": "The page a buyer recovers a lost key on (Keysat's /recover)",
            "operationId": "pages_recover_form",
            "responses": {"200": page("the form")},
        },
        "post": {
            "tags": ["pages"],
            "summary": "The key of an invoice, for its buyer's email, shown on the page",
            "operationId": "pages_recover",
            "requestBody": {
                "required": True,
                "content": {"application/x-www-form-urlencoded": {"schema": form}},
            },
            "responses": {
                "200": page("the key"),
                "400": page("the form again, naming the field that is wrong"),
                "404": page("no license for that invoice id and email"),
                "408": page("the form did not arrive within the body timeout"),
                "415": page("the body is not application/x-www-form-urlencoded"),
                "429": page("too many attempts from this client (shared with /v1/recover)"),
            },
        },
    }


def _operation(e: Endpoint, found: dict[int, Any], components: dict[str, Any]) -> dict:
    operation: dict[str, Any] = {
        "tags": [e.tag],
        "summary": e.summary,
        "operationId": f"{e.tag}_{e.handler.__name__}",
        "responses": {
            "200": {
                "description": "OK",
                "content": {"application/json": {"schema": _answer_schema(e, found)}},
            },
            "400": _error("the request is not valid; the message names the field"),
            "404": _error("not found"),
        },
    }
    if e.scope is not None:
        # The scope an API key needs here (`master`: only the master admin key).
        operation["x-keysmith-scope"] = e.scope
    if e.body is PemText:
        operation["requestBody"] = {
            "required": True,
            "content": {"text/plain": {"schema": {"type": "string", "description": "PEM"}}},
        }
    elif e.body is not Nothing:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": found[id(e.body)]}},
        }
    if e.query is not Nothing:
        name = found[id(e.query)]["$ref"].rsplit("/", 1)[1]
        fields = components[name]
        operation["parameters"] = [
            {"name": field, "in": "query", "required": False, "schema": schema}
            for field, schema in fields["properties"].items()
        ]
    params = [part[1:-1] for part in e.path.split("/") if part.startswith("{")]
    operation.setdefault("parameters", []).extend(
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in params
    )
    if not operation["parameters"]:
        del operation["parameters"]
    if e.tag == "admin":
        operation["security"] = [{"adminKey": []}]
        operation["responses"]["401"] = _error("no admin key")
        operation["responses"]["403"] = _error(
            "wrong admin key, a revoked API key, or one without this route's scope"
        )
    responses = operation["responses"]
    if e.rate_group is not None and e.rate_group not in ANSWERED_GROUPS:
        responses["429"] = _error("rate_limited; retry after Retry-After seconds")
    if e.method != "GET":
        # A write may meet a duplicate or a state that forbids it, a slow or huge body, a full
        # disk or a lock held elsewhere (and a purchase a missing payment provider).
        responses["408"] = _error("the body did not arrive in time; nothing was applied")
        responses["409"] = _error("the current state forbids it; nothing was written")
        responses["413"] = _error("the body is larger than 64 KiB; nothing was applied")
        responses["503"] = _error("database busy, or no payment provider; retry or see message")
        responses["507"] = _error("the disk is full; nothing was written")
    operation["responses"] = dict(sorted(responses.items()))
    return operation


_DELIVERY_HEADERS = {
    "X-Keysat-Signature": "sha256=<hex HMAC-SHA256 of the raw body, keyed with the secret>",
    "X-Keysat-Event": "the event type (the body's `event_type`)",
    "X-Keysat-Delivery": "the delivery id, the same on every retry: de-duplicate on it",
}


def _webhook(name: str, data: dict[str, Any]) -> dict[str, Any]:
    """What Keysmith POSTs to a webhook endpoint for event `name` (Keysat's envelope); any
    2xx acknowledges it."""
    body = {
        "type": "object",
        "properties": {
            "event_type": {"const": name},
            "timestamp": {
                "type": "string",
                "format": "date-time",
                "description": "the change's time, fixed when the event was written",
            },
            "data": data,
        },
        "required": ["event_type", "timestamp", "data"],
    }
    return {
        "post": {
            "summary": f"{name} (at-least-once, in order per endpoint)",
            "operationId": f"webhook_{name.replace('.', '_')}",
            "parameters": [
                {
                    "name": header,
                    "in": "header",
                    "required": True,
                    "description": words,
                    "schema": {"type": "string"},
                }
                for header, words in _DELIVERY_HEADERS.items()
            ],
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": {"2XX": {"description": "received; any other answer is retried"}},
        }
    }


def _each(answer: object) -> tuple[object, ...]:
    """An answer is one model, or a tuple of the models it may be (validate: Valid, Refusal)."""
    return answer if isinstance(answer, tuple) else (answer,)


def _answer_schema(e: Endpoint, found: dict[int, Any]) -> dict[str, Any]:
    schemas = [found[id(kind)] for kind in _each(e.answer) if kind is not None]
    if len(schemas) > 1:
        return {"oneOf": schemas}
    return schemas[0] if schemas else {}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": REF.format(name="Error")}}},
    }


@public_endpoint("GET", "/v1/openapi.json", "This document")
async def openapi_json(request: web.Request) -> web.Response:
    try:
        return web.json_response(document())
    except TypeError as e:  # a model msgspec cannot describe: a bug, said plainly
        return error_response(500, "internal", f"the OpenAPI document cannot be built: {e}")
