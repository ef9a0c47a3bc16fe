"""Scoped API keys against the real daemon: every admin route checked against every role
(generated from the route table), master-only key management, revocation on the next request,
the token shown once and never stored or logged.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from contextlib import closing

import pytest

from daemon.api import mount  # noqa: F401  (every handler module registers into the table)
from daemon.api.table import ENDPOINTS
from daemon.licensing.access import MASTER, ROLE_SCOPES
from tests.test_api_support import admin, db_dump, must, read_db, serving_daemon

daemon = pytest.fixture(scope="module", name="daemon")(serving_daemon)

ADMIN_ROUTES = [e for e in ENDPOINTS if e.tag == "admin"]


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)


def _key(daemon, role: str, scopes: list[str] | None = None) -> str:
    body = {"label": f"{role} key", "role": role}
    if scopes is not None:
        body["scopes"] = scopes
    return must(admin(daemon, "POST", "/v1/admin/api-keys", body), 200)["token"]


def _as(daemon, token: str, method: str, path: str, body=None):
    return daemon.request(method, path, body, headers={"Authorization": f"Bearer {token}"})


def test_every_admin_route_declares_a_scope():
    assert len(ADMIN_ROUTES) >= 34
    assert all(e.scope for e in ADMIN_ROUTES)
    assert {e.scope for e in ADMIN_ROUTES if e.path.startswith("/v1/admin/api-keys")} == {MASTER}


@pytest.mark.parametrize("role", sorted(ROLE_SCOPES))
def test_each_role_reaches_exactly_the_routes_of_its_scopes(daemon, role):
    token = _key(daemon, role)
    before = db_dump(daemon)
    for e in ADMIN_ROUTES:
        # A body no route accepts: an allowed route refuses it (400) or finds nothing (404),
        # so nothing is written either way.
        body = None if e.method == "GET" else {"no_such_field": 1}
        status, answer = _as(daemon, token, e.method, _concrete(e.path), body)
        if e.scope in ROLE_SCOPES[role]:
            assert status not in (401, 403), (role, e.method, e.path, answer)
        else:
            assert status == 403, (role, e.method, e.path, answer)
            assert answer["error"] == "forbidden"
            assert (e.scope in answer["message"]) or "master admin key" in answer["message"]
    assert db_dump(daemon) == before
    assert token not in daemon.log_text()


def test_extra_scopes_add_to_a_role_and_unknown_ones_are_refused(daemon):
    token = _key(daemon, "read-only", ["licenses:write"])
    suspend = f"/v1/admin/licenses/{uuid.uuid4()}/suspend"
    assert _as(daemon, token, "POST", suspend, {})[0] == 404  # allowed, no such license
    assert _as(daemon, token, "POST", "/v1/admin/products", {})[0] == 403
    before = db_dump(daemon)
    status, answer = admin(
        daemon,
        "POST",
        "/v1/admin/api-keys",
        {"label": "x", "role": "support", "scopes": ["x:read"]},
    )
    assert status == 400 and "'scopes'" in answer["message"]
    status, answer = admin(daemon, "POST", "/v1/admin/api-keys", {"label": "x", "role": "root"})
    assert status == 400 and "role" in answer["message"]
    assert db_dump(daemon) == before


def test_the_token_is_shown_once_and_only_its_hash_is_stored(daemon):
    created = must(
        admin(daemon, "POST", "/v1/admin/api-keys", {"label": "crm", "role": "support"}), 200
    )
    token = created["token"]
    assert token.startswith(created["token_prefix"]) and len(token) > 40
    listed = must(admin(daemon, "GET", "/v1/admin/api-keys"), 200)["api_keys"]
    mine = [k for k in listed if k["id"] == created["id"]]
    assert mine and "token" not in mine[0] and mine[0]["role"] == "support"
    with closing(read_db(daemon)) as conn:
        stored = conn.execute(
            "SELECT token_hash FROM api_keys WHERE id = ?", (created["id"],)
        ).fetchone()[0]
    everything = db_dump(daemon)
    assert stored == hashlib.sha256(token.encode()).hexdigest()
    assert token not in everything


def test_only_the_master_key_manages_keys_and_revocation_is_immediate(daemon):
    token = _key(daemon, "full-admin")
    assert _as(daemon, token, "GET", "/v1/admin/licenses")[0] == 200
    status, answer = _as(
        daemon, token, "POST", "/v1/admin/api-keys", {"label": "x", "role": "support"}
    )
    assert status == 403 and "master admin key" in answer["message"]
    key_id = next(
        k["id"]
        for k in must(admin(daemon, "GET", "/v1/admin/api-keys"), 200)["api_keys"]
        if token.startswith(k["token_prefix"]) and k["revoked_at"] is None
    )
    assert _as(daemon, token, "DELETE", f"/v1/admin/api-keys/{key_id}")[0] == 403
    revoked = must(admin(daemon, "DELETE", f"/v1/admin/api-keys/{key_id}"), 200)
    assert revoked["api_key"]["revoked_at"] is not None
    status, answer = _as(daemon, token, "GET", "/v1/admin/licenses")
    assert status == 403 and "revoked" in answer["message"]
    assert admin(daemon, "DELETE", f"/v1/admin/api-keys/{key_id}")[0] == 404


def test_the_openapi_document_names_each_admin_routes_scope(daemon):
    document = must(daemon.request("GET", "/v1/openapi.json"), 200)
    for e in ADMIN_ROUTES:
        assert document["paths"][e.path][e.method.lower()]["x-keysmith-scope"] == e.scope
