"""Scoped API keys against the real daemon, in Keysat's shapes (its
`licensing-service/src/api/api_keys.rs` and the scope each of its handlers asks for): every admin
route checked against every role (generated from the route table, judged by Keysat's grant
rule), master-only key management, the create / list / revoke answers, revocation on the next
request, the token shown once and never stored or logged, and a bad stored row that breaks
nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import uuid
from contextlib import closing

import pytest

from daemon.api import mount  # noqa: F401  (every handler module registers into the table)
from daemon.api.table import ENDPOINTS
from daemon.licensing.access import MASTER, ROLE_SCOPES, SCOPES
from tests.test_api_support import admin, db_dump, must, read_db, serving_daemon

daemon = pytest.fixture(scope="module", name="daemon")(serving_daemon)

ADMIN_ROUTES = [e for e in ENDPOINTS if e.tag == "admin"]
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
# Keysat's token: `ks_` and 32 random bytes in unpadded URL-safe base64.
KEYSAT_TOKEN = re.compile(r"^ks_[A-Za-z0-9_-]{43}$")
LISTED_FIELDS = {
    "id",
    "label",
    "role",
    "created_at",
    "last_used_at",
    "revoked_at",
    "scopes",
    "token_prefix",
}

# The scope Keysat's handler asks for, for each admin route Keysmith shares with it
# (`require_scope(...)` in api/admin.rs, policies.rs, discount_codes.rs, machines.rs,
# webhook_endpoints.rs, webhook_deliveries.rs; `require_admin` = master in api_keys.rs).
KEYSAT_SCOPES = {
    ("POST", "/v1/admin/products"): "products:write",
    ("PATCH", "/v1/admin/products/{id}"): "products:write",
    ("PATCH", "/v1/admin/products/{id}/active"): "products:write",
    ("DELETE", "/v1/admin/products/{id}"): "products:write",
    ("POST", "/v1/admin/licenses"): "licenses:write",
    ("GET", "/v1/admin/licenses"): "licenses:read",
    ("GET", "/v1/admin/licenses/search"): "licenses:read",
    ("GET", "/v1/admin/licenses/summary"): "licenses:read",
    ("GET", "/v1/admin/licenses/counts"): "licenses:read",
    ("GET", "/v1/admin/revenue/summary"): "licenses:read",
    ("POST", "/v1/admin/licenses/{id}/revoke"): "licenses:write",
    ("POST", "/v1/admin/licenses/{id}/suspend"): "licenses:write",
    ("POST", "/v1/admin/licenses/{id}/unsuspend"): "licenses:write",
    ("POST", "/v1/admin/policies"): "policies:write",
    ("GET", "/v1/admin/policies"): "policies:read",
    ("PATCH", "/v1/admin/policies/{id}"): "policies:write",
    ("DELETE", "/v1/admin/policies/{id}"): "policies:write",
    ("PATCH", "/v1/admin/policies/{id}/active"): "policies:write",
    ("PATCH", "/v1/admin/policies/{id}/archived"): "policies:write",
    ("PATCH", "/v1/admin/policies/{id}/public"): "policies:write",
    ("POST", "/v1/admin/discount-codes"): "discount_codes:write",
    ("GET", "/v1/admin/discount-codes"): "discount_codes:read",
    ("GET", "/v1/admin/discount-codes/{id}"): "discount_codes:read",
    ("PATCH", "/v1/admin/discount-codes/{id}"): "discount_codes:write",
    ("PATCH", "/v1/admin/discount-codes/{id}/active"): "discount_codes:write",
    ("DELETE", "/v1/admin/discount-codes/{id}"): "discount_codes:write",
    ("GET", "/v1/admin/machines"): "machines:read",
    ("POST", "/v1/admin/machines/{id}/deactivate"): "machines:write",
    ("GET", "/v1/admin/audit"): "audit:read",
    ("POST", "/v1/admin/webhook-endpoints"): "webhooks:write",
    ("GET", "/v1/admin/webhook-endpoints"): "webhooks:read",
    ("DELETE", "/v1/admin/webhook-endpoints/{id}"): "webhooks:write",
    ("POST", "/v1/admin/api-keys"): MASTER,
    ("GET", "/v1/admin/api-keys"): MASTER,
    ("DELETE", "/v1/admin/api-keys/{id}"): MASTER,
}


def keysat_grants(role: str, scope: str) -> bool:
    """Keysat's `Role::grants`, written out from its source (not from Keysmith's table)."""
    if scope == MASTER:
        return False
    reads = scope.endswith(":read")
    return {
        "full-admin": True,
        "read-only": reads,
        "license-issuer": reads or scope == "licenses:write",
        "support": reads or scope in ("licenses:write", "subscriptions:write", "machines:write"),
        # api_keys.rs Role::MerchantOnboard: catalogue and license writes, matched explicitly.
        "merchant-onboard": reads
        or scope in ("products:write", "policies:write", "licenses:write"),
    }[role]


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)


def _create(daemon, body) -> dict:
    return must(admin(daemon, "POST", "/v1/admin/api-keys", body), 200)


def _key(daemon, role: str, scopes: list[str] | None = None) -> str:
    body = {"label": f"{role} key", "role": role}
    if scopes is not None:
        body["scopes"] = scopes
    return _create(daemon, body)["token"]


def _as(daemon, token: str, method: str, path: str, body=None):
    return daemon.request(method, path, body, headers={"Authorization": f"Bearer {token}"})


def _listed(daemon) -> dict[str, dict]:
    return {k["id"]: k for k in must(admin(daemon, "GET", "/v1/admin/api-keys"), 200)["api_keys"]}


# ----- scopes and roles -----


def test_every_admin_route_declares_the_scope_keysat_asks_for():
    declared = {(e.method, e.path): e.scope for e in ADMIN_ROUTES}
    shared = {route: declared[route] for route in KEYSAT_SCOPES if route in declared}
    assert len(shared) >= 30, sorted(set(KEYSAT_SCOPES) - set(declared))
    assert shared == {route: KEYSAT_SCOPES[route] for route in shared}
    # Keysmith-only routes take their resource's scope, read for GET, write otherwise.
    for e in ADMIN_ROUTES:
        assert e.scope == MASTER or e.scope in SCOPES, (e.method, e.path, e.scope)
        if e.scope != MASTER:
            assert e.scope.endswith(":read") == (e.method == "GET"), (e.method, e.path)


def test_the_roles_grant_what_keysats_roles_grant():
    assert set(ROLE_SCOPES) == {
        "read-only",
        "license-issuer",
        "support",
        "merchant-onboard",
        "full-admin",
    }
    for role, scopes in ROLE_SCOPES.items():
        assert scopes == {s for s in SCOPES if keysat_grants(role, s)}, role


@pytest.mark.parametrize("role", sorted(ROLE_SCOPES))
def test_each_role_reaches_exactly_the_routes_keysat_grants_it(daemon, role):
    token = _key(daemon, role)
    # The first use records last_used_at; the others, within the minute, write nothing.
    assert _as(daemon, token, "GET", "/v1/admin/licenses")[0] == 200
    before = db_dump(daemon)
    for e in ADMIN_ROUTES:
        # A body no route accepts: an allowed route refuses it (400) or finds nothing (404),
        # so nothing is written either way.
        body = None if e.method == "GET" else {"no_such_field": 1}
        status, answer = _as(daemon, token, e.method, _concrete(e.path), body)
        if keysat_grants(role, e.scope):
            assert status not in (401, 403), (role, e.method, e.path, answer)
        else:
            assert status == 403, (role, e.method, e.path, answer)
            assert answer["error"] == "forbidden"
            assert (e.scope in answer["message"]) or "master admin key" in answer["message"]
    assert db_dump(daemon) == before
    assert token not in daemon.log_text()


def test_an_earlier_spelling_is_refused_with_keysats(daemon):
    before = db_dump(daemon)
    body = {"label": "x", "role": "support", "scopes": ["discount-codes:read"]}
    status, answer = admin(daemon, "POST", "/v1/admin/api-keys", body)
    assert status == 400 and answer["message"].startswith("'scopes': unknown scope")
    assert "Keysat spells it 'discount_codes:read'" in answer["message"]
    assert db_dump(daemon) == before


def test_extra_scopes_add_to_a_role(daemon):
    token = _key(daemon, "read-only", ["licenses:write", "discount_codes:write"])
    suspend = f"/v1/admin/licenses/{uuid.uuid4()}/suspend"
    assert _as(daemon, token, "POST", suspend, {})[0] == 404  # allowed, no such license
    code = f"/v1/admin/discount-codes/{uuid.uuid4()}"
    assert _as(daemon, token, "DELETE", code)[0] == 404
    status, answer = _as(daemon, token, "POST", "/v1/admin/products", {})
    assert status == 403 and "'products:write'" in answer["message"]


# ----- create, list, revoke: Keysat's answers -----


def test_create_answers_keysats_fields_and_the_token_once(daemon):
    created = _create(daemon, {"label": "  crm  ", "role": "support"})
    assert set(created) == LISTED_FIELDS | {"token"}
    assert created["label"] == "crm"  # Keysat stores the label trimmed
    assert created["role"] == "support" and created["scopes"] == []
    assert KEYSAT_TOKEN.match(created["token"]), created["token"]
    assert created["token"].startswith(created["token_prefix"])
    assert RFC3339_UTC.match(created["created_at"]) and created["revoked_at"] is None
    uuid.UUID(created["id"])

    listed = _listed(daemon)[created["id"]]
    assert listed == {k: v for k, v in created.items() if k != "token"}
    with closing(read_db(daemon)) as conn:
        stored = conn.execute(
            "SELECT token_hash FROM api_keys WHERE id = ?", (created["id"],)
        ).fetchone()[0]
    assert stored == hashlib.sha256(created["token"].encode()).hexdigest()
    assert created["token"] not in db_dump(daemon)
    assert created["token"] not in daemon.log_text()


def test_the_list_is_keysats_api_keys_newest_first_without_tokens(daemon):
    older = _create(daemon, {"label": "older", "role": "read-only"})
    newer = _create(daemon, {"label": "newer", "role": "full-admin", "scopes": ["audit:read"]})
    status, answer = admin(daemon, "GET", "/v1/admin/api-keys")
    assert status == 200 and set(answer) == {"api_keys"}
    ids = [k["id"] for k in answer["api_keys"]]
    assert ids.index(newer["id"]) < ids.index(older["id"])
    for key in answer["api_keys"]:
        assert set(key) == LISTED_FIELDS
    text = json.dumps(answer)
    assert older["token"] not in text and newer["token"] not in text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"label": "   ", "role": "support"}, "label"),
        ({"label": "x" * 81, "role": "support"}, "label"),
        ({"role": "support"}, "label"),
        ({"label": "x", "role": "root"}, "role"),
        ({"label": "x"}, "role"),
        ({"label": "x", "role": "support", "scopes": ["subscriptions:write"]}, "scopes"),
        ({"label": "x", "role": "support", "scope": ["audit:read"]}, "scope"),
    ],
)
def test_bad_create_input_is_refused_by_name_and_writes_nothing(daemon, body, field):
    before = db_dump(daemon)
    status, answer = admin(daemon, "POST", "/v1/admin/api-keys", body)
    assert status == 400 and answer["error"] == "bad_request", answer
    assert f"'{field}'" in answer["message"] or f"`{field}`" in answer["message"], answer
    assert db_dump(daemon) == before


def test_revoke_answers_as_keysat_and_takes_effect_on_the_next_request(daemon):
    token = _key(daemon, "full-admin")
    assert _as(daemon, token, "GET", "/v1/admin/licenses")[0] == 200
    key_id = next(k["id"] for k in _listed(daemon).values() if token.startswith(k["token_prefix"]))
    # Only the master key manages keys; a full-admin key gets 403, as in Keysat.
    status, answer = _as(daemon, token, "DELETE", f"/v1/admin/api-keys/{key_id}")
    assert status == 403 and "master admin key" in answer["message"]
    status, answer = _as(
        daemon, token, "POST", "/v1/admin/api-keys", {"label": "x", "role": "support"}
    )
    assert status == 403 and "master admin key" in answer["message"]

    status, answer = admin(daemon, "DELETE", f"/v1/admin/api-keys/{key_id}")
    assert status == 200 and set(answer) == {"ok", "revoked_at"}, answer
    assert answer["ok"] is True and RFC3339_UTC.match(answer["revoked_at"])
    assert _listed(daemon)[key_id]["revoked_at"] == answer["revoked_at"]
    status, refused = _as(daemon, token, "GET", "/v1/admin/licenses")
    assert status == 403 and "revoked" in refused["message"]

    # Revoked again: Keysat's `{ok, already_revoked}`, nothing written (not even an audit row).
    before = db_dump(daemon)
    status, again = admin(daemon, "DELETE", f"/v1/admin/api-keys/{key_id}")
    assert (status, again) == (200, {"ok": True, "already_revoked": True})
    assert db_dump(daemon) == before

    status, missing = admin(daemon, "DELETE", f"/v1/admin/api-keys/{uuid.uuid4()}")
    assert status == 404 and missing["error"] == "not_found" and "API key" in missing["message"]
    status, bad = admin(daemon, "DELETE", "/v1/admin/api-keys/not-a-uuid")
    assert status == 404 and "'id'" in bad["message"]
    assert db_dump(daemon) == before


def test_the_key_is_presented_as_keysats_bearer_header(daemon):
    token = _key(daemon, "read-only")
    status, answer = daemon.request("GET", "/v1/admin/licenses")
    assert status == 401 and answer["error"] == "unauthorized"
    status, answer = daemon.request(
        "GET", "/v1/admin/licenses", headers={"Authorization": f"Basic {token}"}
    )
    assert status == 401
    status, answer = daemon.request("GET", "/v1/admin/licenses", headers={"X-Api-Key": token})
    assert status == 401
    assert _as(daemon, token, "GET", "/v1/admin/licenses")[0] == 200
    # One character off: refused like a wrong master key (403), as in Keysat.
    wrong = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert _as(daemon, wrong, "GET", "/v1/admin/licenses")[0] == 403


# ----- a bad stored row -----


def test_bad_stored_scopes_break_neither_the_listing_nor_the_key(daemon):
    """Rows an older version or a hand edit left: not JSON, not a list, an earlier Keysmith's
    spelling. The listing still answers, each key keeps its role's scopes, one warning each."""
    stored = {
        "not json": ("{[", []),
        "not a list": ('{"audit:read": true}', []),
        "earlier spellings": (
            '["discount-codes:write", "revenue:read", "audit:read"]',
            ["audit:read", "discount_codes:write"],
        ),
    }
    made: dict[str, tuple[str, str]] = {}
    with closing(sqlite3.connect(daemon.db_path, timeout=10)) as conn:
        for label, (scopes, _) in stored.items():
            key_id, token = str(uuid.uuid4()), f"ks_{uuid.uuid4().hex}"
            conn.execute(
                "INSERT INTO api_keys (id, label, role, scopes, token_hash, token_prefix, "
                "created_at) VALUES (?, ?, 'read-only', ?, ?, 'ks_old', 0)",
                (key_id, label, scopes, hashlib.sha256(token.encode()).hexdigest()),
            )
            made[label] = (key_id, token)
        conn.commit()

    for _ in range(2):
        listed = _listed(daemon)
        for label, (_, expected) in stored.items():
            assert listed[made[label][0]]["scopes"] == expected, label
    for _, token in made.values():
        assert _as(daemon, token, "GET", "/v1/admin/licenses")[0] == 200  # the role's read
    code = f"/v1/admin/discount-codes/{uuid.uuid4()}"
    assert _as(daemon, made["earlier spellings"][1], "DELETE", code)[0] == 404  # allowed
    assert _as(daemon, made["not json"][1], "DELETE", code)[0] == 403
    log = daemon.log_text().splitlines()
    for label, (key_id, _) in made.items():
        warnings = [line for line in log if key_id in line and "WARN" in line]
        assert len(warnings) == 1, (label, warnings)  # once per row, not per listing
        assert "scopes" in warnings[0]


def test_the_openapi_document_names_each_admin_routes_scope(daemon):
    document = must(daemon.request("GET", "/v1/openapi.json"), 200)
    for e in ADMIN_ROUTES:
        assert document["paths"][e.path][e.method.lower()]["x-keysmith-scope"] == e.scope
    revoke = document["paths"]["/v1/admin/api-keys/{id}"]["delete"]
    assert len(revoke["responses"]["200"]["content"]["application/json"]["schema"]["oneOf"]) == 2


# ----- last use -----


def test_last_used_at_is_written_at_most_once_a_minute_per_key(daemon):
    from daemon.licensing.access import LAST_USED_EVERY

    created = _create(daemon, {"label": "busy", "role": "read-only"})
    token, key_id = created["token"], created["id"]
    assert created["last_used_at"] is None

    def stored() -> int | None:
        with closing(read_db(daemon)) as conn:
            row = conn.execute("SELECT last_used_at FROM api_keys WHERE id = ?", (key_id,))
            return row.fetchone()[0]

    def set_stored(value: int) -> None:
        with closing(sqlite3.connect(daemon.db_path, timeout=10)) as conn:
            conn.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (value, key_id))
            conn.commit()

    assert _as(daemon, token, "GET", "/v1/admin/licenses")[0] == 200
    first = stored()
    assert first is not None
    assert _listed(daemon)[key_id]["last_used_at"] is not None
    # A use within the minute writes nothing: backdated by less than the interval, the row
    # keeps the backdated value, and the whole database is byte-for-byte the same.
    set_stored(first - (LAST_USED_EVERY - 20))
    before = db_dump(daemon)
    for _ in range(5):
        assert _as(daemon, token, "GET", "/v1/admin/licenses")[0] == 200
    assert db_dump(daemon) == before
    assert stored() == first - (LAST_USED_EVERY - 20)
    # Older than the interval: the next use writes the time again.
    set_stored(first - LAST_USED_EVERY - 5)
    assert _as(daemon, token, "GET", "/v1/admin/licenses")[0] == 200
    assert stored() >= first


def test_a_merchant_onboard_key_stands_up_a_catalogue_and_issues(daemon):
    token = _key(daemon, "merchant-onboard")
    slug = f"onboard-{uuid.uuid4().hex[:8]}"
    body = {"slug": slug, "name": "Onboarded", "price_sats": 1000}
    assert _as(daemon, token, "POST", "/v1/admin/products", body)[0] == 200
    policy = {"product_slug": slug, "slug": "std", "name": "Std", "is_default": True}
    assert _as(daemon, token, "POST", "/v1/admin/policies", policy)[0] == 200
    status, issued = _as(daemon, token, "POST", "/v1/admin/licenses", {"product_slug": slug})
    assert status == 200 and issued["license_key"].startswith("LIC1-")
    code = {"code": "ONBOARD1", "kind": "percent", "amount": 100}
    status, refused = _as(daemon, token, "POST", "/v1/admin/discount-codes", code)
    assert status == 403 and "discount_codes:write" in refused["message"]
