"""`GET /v1/openapi.json` describes exactly the routes the daemon serves, no more, no less."""

from __future__ import annotations

import asyncio
import json

import pytest

from daemon import __version__
from daemon.api import openapi
from daemon.api.app import create_app
from daemon.db import init
from daemon.licensing.service import Licensing
from daemon.status import Lifecycle, history_from
from tests.test_api_support import must, serving_daemon

METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}

daemon = pytest.fixture(scope="module", name="daemon")(serving_daemon)


def _registered_routes(tmp_path) -> set[tuple[str, str]]:
    """Build the serving app exactly as boot does, on a real database, and list its routes."""

    async def build() -> set[tuple[str, str]]:
        pool = await init(tmp_path / "keysmith.db")
        try:
            licensing = await Licensing.open(pool, admin_api_key="k" * 32)
            lifecycle = Lifecycle(
                tmp_path / "status.json",
                version=__version__,
                bind="127.0.0.1:0",
                history=history_from(None),
            )
            app = create_app(lifecycle, licensing)
            return {
                (route.method, route.resource.canonical)
                for route in app.router.routes()
                if route.method in METHODS
            }
        finally:
            await pool.close()

    return asyncio.run(build())


def _documented_routes(document: dict) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    }


def test_every_registered_route_is_described_and_nothing_else(tmp_path):
    registered = _registered_routes(tmp_path)
    documented = _documented_routes(openapi.document())
    assert registered - documented == set(), "routes served but not described"
    assert documented - registered == set(), "routes described but not served"
    assert ("POST", "/v1/validate") in registered and ("GET", "/healthz") in registered


def test_admin_operations_declare_the_bearer_key_and_public_ones_do_not():
    for path, operations in openapi.document()["paths"].items():
        for method, operation in operations.items():
            is_admin = path.startswith("/v1/admin/")
            assert ("security" in operation) == is_admin, (method, path)
            if is_admin:
                assert "401" in operation["responses"], (method, path)


def test_every_schema_reference_resolves():
    document = openapi.document()
    text = json.dumps(document)
    schemas = document["components"]["schemas"]
    refs = {part.split('"')[0] for part in text.split('"$ref": "#/components/schemas/')[1:]}
    assert refs and refs <= set(schemas), refs - set(schemas)


def test_the_running_daemon_serves_the_document(daemon):
    served = must(daemon.request("GET", "/v1/openapi.json"), 200)
    assert served["openapi"].startswith("3.1")
    assert served == json.loads(json.dumps(openapi.document()))
    reasons = served["components"]["schemas"]["Refusal"]["properties"]["reason"]
    assert set(reasons["enum"]) == {
        "bad_format",
        "bad_signature",
        "not_found",
        "revoked",
        "suspended",
        "expired",
        "product_mismatch",
        "fingerprint_mismatch",
        "too_many_machines",
    }


def test_the_document_is_valid_openapi_3_1():
    from openapi_spec_validator import OpenAPIV31SpecValidator

    errors = [e.message for e in OpenAPIV31SpecValidator(openapi.document()).iter_errors()]
    assert errors == []
