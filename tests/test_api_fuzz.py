"""Hostile requests against every public and admin route of the real daemon.

Hypothesis draws the requests: mostly a valid body with one field replaced, dropped or added
(so the request gets past the first check and into the service), else random JSON shapes and
types built from the field names of the daemon's own OpenAPI document; unicode of every kind,
huge and deeply nested bodies, odd path parameters and query strings, odd methods and
headers. Whatever arrives, the daemon must answer: never a 500, never a hang (every request
has a timeout), always the JSON error envelope for a refusal, and still healthy afterwards.
Admin requests without the right key must change nothing, proven by a dump of the whole
database before and after a batch of them.

Malformed HTTP that no client library will send (garbage request lines, broken headers,
lying Content-Length) goes over a raw socket. The bugs the fuzzing found each keep a test of
their own at the end.

Default run: 100 examples per fuzz test, the same ones every run; `make fuzz` draws 1000 new
ones per test (KEYSMITH_FUZZ_EXAMPLES=5000 for a longer soak).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import urllib.parse
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.api import mount  # noqa: F401  (every handler module registers into the table)
from daemon.api.app import MAX_BODY_BYTES
from daemon.api.table import ENDPOINTS
from tests.daemon_proc import DaemonProc
from tests.test_api_support import (
    admin,
    db_dump,
    issue,
    make_product,
    must,
    serving_daemon,
    unique,
)

daemon = pytest.fixture(scope="module", name="daemon")(serving_daemon)

TIMEOUT = 10.0  # seconds per request: an answer slower than this counts as a hang
PUBLIC_ROUTES = [(e.method, e.path) for e in ENDPOINTS if e.tag == "public"]
ADMIN_ROUTES = [(e.method, e.path) for e in ENDPOINTS if e.tag == "admin"]
OPS_ROUTES = [("GET", "/healthz"), ("GET", "/metrics")]
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
# A 503 is an answer, not a failure, only where the API documents it: purchases need a
# payment provider, and none is configured.
DOCUMENTED_503 = {"payment_not_configured"}
AIOHTTP_OWN_REFUSALS = (b"Got more than 8190 bytes when reading", b"Invalid header value char")
FUZZ = settings(
    max_examples=int(os.environ.get("KEYSMITH_FUZZ_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ----- the raw client -----


def send(
    proc: DaemonProc,
    method: str,
    target: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, str, bytes]:
    """One request on a fresh connection; (status, content type, body). Times out, never hangs."""
    conn = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=TIMEOUT)
    try:
        conn.request(method, target, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type", ""), resp.read()
    finally:
        conn.close()


def assert_answered_well(method: str, target: str, answer: tuple[int, str, bytes]) -> None:
    status, ctype, raw = answer
    where = f"{method} {target[:200]} -> {status} {raw[:300]!r}"
    assert 200 <= status < 600, where
    if method == "HEAD" or target.startswith("/metrics"):
        assert status < 500, where
        return
    if method == "OPTIONS" and status == 204:  # a CORS preflight of a public route: no body
        assert raw == b"", where
        return
    if not ctype.startswith("application/json") and raw.startswith(AIOHTTP_OWN_REFUSALS):
        # Refused by aiohttp's HTTP parser before the app sees the request (a request line
        # over 8190 bytes, a control character in a header), in its plain text.
        assert 400 <= status < 500, where
        return
    assert ctype.startswith("application/json"), where
    body = json.loads(raw)
    if status >= 500:
        assert status == 503 and body.get("error") in DOCUMENTED_503, where
    if status >= 400:
        assert body["ok"] is False, where
        assert isinstance(body["error"], str) and body["error"], where
        assert isinstance(body["message"], str) and body["message"], where


def assert_healthy(proc: DaemonProc) -> None:
    assert proc.alive(), proc.log_text()
    status, body = proc.request("GET", "/healthz")
    assert (status, body["state"]) == (200, "serving"), body


# ----- what the requests are made of -----


def _field_names(document: dict) -> list[str]:
    """Every property and parameter name the OpenAPI document mentions."""
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("properties"), dict):
                names.update(node["properties"])
            if node.get("in") in ("query", "path") and isinstance(node.get("name"), str):
                names.add(node["name"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    return sorted(names)


ODD_TEXT = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "a\x00b",
        "\ud800",  # a lone surrogate: valid in JSON text (\ud800), not encodable as UTF-8
        "\udfff\ud800",
        "\U0001f600" * 3,
        "é",
        "e\u0301",
        "\u202e",
        "\ufeff",
        "null",
        "true",
        "-1",
        "1e309",
        "9" * 30,
        "../../etc/passwd",
        "%00",
        "'; DROP TABLE licenses; --",
        "LIC1-",
        "LIC1-AAAA-BBBB",
        "0001-01-01T00:00:00+00:00",
        "2030-01-01T00:00:00",
        "2030-01-01T00:00:00Z",
        "x" * 5000,
    ]
)
TEXT = st.one_of(
    st.text(max_size=40), ODD_TEXT, st.from_regex(r"[a-z0-9][a-z0-9_-]{0,8}", fullmatch=True)
)
NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 2**53, 2**53 + 1, 2**63, -(2**63), 10**400, 253_402_300_800]),
    st.floats(allow_nan=True, allow_infinity=True),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=12,
)


def _deep(depth: int, kind: str) -> bytes:
    if kind == "array":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


def valid_bodies(world: dict) -> dict[tuple[str, str], Any]:
    """For each route taking a body, a valid body given a unique suffix: the starting point
    of a mutant that differs from it in one field, so the request gets past the first check."""
    slug, lic, code = world["slug"], world["license"], world["code"]
    machine = {
        "key": lic["license_key"],
        "fingerprint": "fp-fuzz",
        "hostname": "h",
        "platform": "p",
    }
    return {
        ("POST", "/v1/admin/products"): lambda u: {
            "slug": f"p-{u}",
            "name": "Fuzz",
            "description": "d",
            "price_sats": 1000,
            "metadata": {"a": 1},
            "entitlements_catalog": [{"slug": "pro", "name": "Pro", "description": "x"}],
            "price_currency": "USD",
            "price_value": 999,
        },
        ("POST", "/v1/admin/policies"): lambda u: {
            "product_slug": slug,
            "slug": f"t-{u}",
            "name": "Tier",
            "description": "d",
            "price_sats_override": 10,
            "duration_seconds": 30 * 86_400,
            "grace_seconds": 86_400,
            "max_machines": 2,
            "is_trial": False,
            "entitlements": [],
            "highlighted": False,
            "sort_order": 1,
            "is_default": False,
            "public": True,
        },
        ("POST", "/v1/admin/licenses"): lambda u: {
            "product_slug": slug,
            "policy_slug": "standard",
            "note": u,
            "fingerprint": f"fp-{u}",
            "expires_at": "2040-01-01T00:00:00Z",
            "entitlements": [],
            "max_machines": 0,
            "is_trial": False,
            "grace_seconds": 3600,
            "buyer_email": f"{u}@example.com",
        },
        ("POST", "/v1/admin/discount-codes"): lambda u: {
            "code": f"c-{u}",
            "kind": "percent",
            "amount": 1000,
            "product_slug": slug,
            "policy_slug": "standard",
            "max_uses": 5,
            "expires_at": 2_200_000_000,
            "description": "n",
            "referrer_label": f"r-{u}",
            "policy_slugs": ["standard"],
            "discount_currency": "SAT",
        },
        ("PATCH", "/v1/admin/products/{id}/active"): lambda u: {"active": True},
        ("PATCH", "/v1/admin/policies/{id}/active"): lambda u: {"active": True},
        ("PATCH", "/v1/admin/discount-codes/{id}/active"): lambda u: {"active": True},
        ("POST", "/v1/admin/licenses/{id}/revoke"): lambda u: {"reason": "r"},
        ("POST", "/v1/admin/machines/{id}/deactivate"): lambda u: {"reason": "r"},
        ("POST", "/v1/validate"): lambda u: {**machine, "product_slug": slug},
        ("POST", "/v1/machines/activate"): lambda u: dict(machine),
        ("POST", "/v1/machines/heartbeat"): lambda u: dict(machine),
        ("POST", "/v1/machines/deactivate"): lambda u: {**machine, "reason": "r"},
        ("POST", "/v1/redeem"): lambda u: {
            "product": slug,
            "code": code,
            "buyer_email": f"{u}@example.com",
            "buyer_note": "n",
        },
        ("POST", "/v1/purchase"): lambda u: {
            "product": slug,
            "code": code,
            "buyer_email": f"{u}@example.com",
        },
        ("POST", "/v1/recover"): lambda u: {
            "invoice_id": "00000000-0000-0000-0000-000000000000",
            "buyer_email": f"{u}@example.com",
        },
        ("PATCH", "/v1/admin/products/{id}"): lambda u: {"name": f"n-{u}", "price_sats": 5},
        ("PATCH", "/v1/admin/policies/{id}"): lambda u: {"grace_seconds": 60, "max_machines": 0},
        ("PATCH", "/v1/admin/discount-codes/{id}"): lambda u: {
            "description": u,
            "max_uses": 9,
            "referrer_label": u,
        },
        ("POST", "/v1/admin/licenses/{id}/suspend"): lambda u: {"reason": "r"},
    }


# Every representable time and zone, including times past 9999-12-31T23:59:59Z in UTC.
ISO_TIMES = st.datetimes(timezones=st.timezones()).map(lambda t: t.isoformat())


@st.composite
def mutant(draw: st.DrawFn, valid: Any, world: dict) -> bytes:
    body = valid(draw(st.uuids()).hex[:12])
    change = draw(st.sampled_from(["replace", "replace", "replace", "drop", "add", "none"]))
    if change in ("replace", "drop"):
        field = draw(st.sampled_from(sorted(body)))
        if change == "drop":
            del body[field]
        else:
            body[field] = draw(
                st.one_of(
                    JSON_VALUES, ODD_TEXT, NUMBERS, ISO_TIMES, st.sampled_from(world["known"])
                )
            )
    elif change == "add":
        body[draw(st.one_of(st.sampled_from(world["names"]), TEXT))] = draw(JSON_VALUES)
    return json.dumps(body).encode()


@st.composite
def bodies(draw: st.DrawFn, world: dict, route: tuple[str, str]) -> bytes | None:
    """A request body: mostly one-field mutants of a valid body or JSON objects built from real
    field names, sometimes anything at all."""
    valid = valid_bodies(world).get(route)
    kind = draw(
        st.sampled_from(
            ["mutant" if valid else "object"] * 6
            + ["object"] * 3
            + ["none", "json", "bytes", "huge", "deep", "nan", "bigint", "utf16"]
        )
    )
    names, known = world["names"], world["known"]
    if kind == "mutant":
        return draw(mutant(valid, world))
    if kind == "none":
        return None
    if kind == "object":
        keys = st.one_of(st.sampled_from(names), TEXT)
        values = st.one_of(JSON_VALUES, st.sampled_from(known))
        obj = draw(st.dictionaries(keys, values, max_size=8))
        return json.dumps(obj).encode()
    if kind == "json":
        return json.dumps(draw(JSON_VALUES)).encode()
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "huge":
        size = draw(st.sampled_from([MAX_BODY_BYTES - 20, MAX_BODY_BYTES + 1, 4 * MAX_BODY_BYTES]))
        return b'{"key": "' + b"A" * size + b'"}'
    if kind == "deep":
        return _deep(
            draw(st.sampled_from([100, 1000, 20_000, 30_000])),
            draw(st.sampled_from(["array", "object"])),
        )
    if kind == "nan":
        return b'{"key": NaN, "price_sats": Infinity, "active": -Infinity}'
    if kind == "bigint":
        return b'{"price_sats": ' + b"9" * draw(st.sampled_from([20, 4300, 5000])) + b"}"
    return json.dumps({"key": "x", "slug": "y"}).encode("utf-16")


def path_values(known: list[str]) -> st.SearchStrategy[str]:
    raw = st.one_of(
        st.uuids().map(str),
        st.sampled_from(known),
        TEXT,
        st.sampled_from(
            ["search", ".", "..", "%", "%2F", "a/b", "00000000-0000-0000-0000-00000000000"]
        ),
    )
    return raw.map(lambda v: urllib.parse.quote(v, safe="", errors="surrogatepass"))


@st.composite
def targets(draw: st.DrawFn, template: str, names: list[str], known: list[str]) -> str:
    path = re.sub(r"\{[^}]+\}", lambda _m: draw(path_values(known)) or "x", template)
    if draw(st.booleans()):
        pairs = draw(
            st.lists(
                st.tuples(
                    st.one_of(st.sampled_from(names), TEXT), st.one_of(TEXT, st.sampled_from(known))
                ),
                max_size=4,
            )
        )
        query = "&".join(
            f"{urllib.parse.quote(k, errors='surrogatepass')}="
            f"{urllib.parse.quote(v, errors='surrogatepass')}"
            for k, v in pairs
        )
        path = f"{path}?{query}"
    return path


# Latin-1 too: header bytes above 0x7F are not UTF-8 and once reached two bugs.
HEADER_MAX_CODEPOINT = 0xFF
HEADER_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=HEADER_MAX_CODEPOINT),
    max_size=60,
)
CONTENT_TYPES = st.one_of(
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "application/json; charset=latin-1",
            "text/plain",
            "multipart/form-data; boundary=x",
            "application/x-www-form-urlencoded",
            "",
        ]
    ),
    HEADER_TEXT,
)


@st.composite
def extra_headers(draw: st.DrawFn) -> dict[str, str]:
    headers = {}
    if draw(st.booleans()):
        headers["Content-Type"] = draw(CONTENT_TYPES)
    if draw(st.booleans()):
        name = draw(
            st.sampled_from(
                ["Accept", "Accept-Encoding", "X-Forwarded-For", "Cookie", "Expect", "Origin"]
            )
        )
        headers[name] = draw(HEADER_TEXT)
    return headers


def wrong_authorizations(key: str) -> st.SearchStrategy[str | None]:
    """Authorization values that are not the admin key (nor it with spaces around)."""
    return st.one_of(
        st.none(),
        st.sampled_from(
            [
                "",
                "Bearer",
                "Bearer ",
                f"Basic {key}",
                f"Token {key}",
                f"Bearer {key[:-1]}",
                f"Bearer {key}x",
                f"Bearer {key.upper()}",
                f"Bearer{key}",
                f"Bearer {key[0]}",
                f"bearer  {key[::-1]}  ",
            ]
        ),
        HEADER_TEXT.map(lambda t: f"Bearer {t}"),
        HEADER_TEXT,
    )


# ----- fixtures -----


@pytest.fixture(scope="module")
def world(daemon):
    """Field names from the OpenAPI document, and real ids, slugs and a code to aim at."""
    document = must(daemon.request("GET", "/v1/openapi.json"), 200)
    slug = make_product(daemon, seats=2)
    lic = issue(daemon, slug)
    code = must(
        admin(
            daemon,
            "POST",
            "/v1/admin/discount-codes",
            {"code": "fuzz-free", "kind": "free_license", "product_slug": slug},
        ),
        200,
    )
    products = must(admin(daemon, "GET", "/v1/admin/products"), 200)["products"]
    known = [slug, lic["license_id"], lic["license_key"], lic["product_id"], "standard"]
    known += [p["id"] for p in products] + [code["id"], code["code"]]
    return {
        "names": _field_names(document),
        "known": known,
        "license": lic,
        "slug": slug,
        "code": code["code"],
    }


def _key(proc: DaemonProc) -> str:
    return proc.env["KEYSMITH_ADMIN_API_KEY"]


# ----- the fuzz tests -----


@FUZZ
@given(data=st.data())
def test_public_routes_answer_every_request_without_a_server_error(daemon, world, data):
    route = data.draw(st.sampled_from(PUBLIC_ROUTES + OPS_ROUTES), label="route")
    method = data.draw(st.sampled_from([route[0]] * 4 + list(METHODS)), label="method")
    target = data.draw(targets(route[1], world["names"], world["known"]), label="target")
    body = data.draw(bodies(world, route), label="body")
    headers = data.draw(extra_headers(), label="headers")
    assert_answered_well(method, target, send(daemon, method, target, body, headers))


@FUZZ
@given(data=st.data())
def test_admin_routes_with_the_key_answer_every_request_without_a_server_error(daemon, world, data):
    route = data.draw(st.sampled_from(ADMIN_ROUTES), label="route")
    method = data.draw(st.sampled_from([route[0]] * 4 + list(METHODS)), label="method")
    target = data.draw(targets(route[1], world["names"], world["known"]), label="target")
    body = data.draw(bodies(world, route), label="body")
    headers = data.draw(extra_headers(), label="headers")
    headers["Authorization"] = f"Bearer {_key(daemon)}"
    assert_answered_well(method, target, send(daemon, method, target, body, headers))


def test_admin_requests_without_the_key_change_nothing(daemon, world):
    before = db_dump(daemon)
    answered: list[int] = []

    @FUZZ
    @given(data=st.data())
    def unauthenticated(data):
        route = data.draw(st.sampled_from(ADMIN_ROUTES), label="route")
        method = route[0]
        target = data.draw(targets(route[1], world["names"], world["known"]), label="target")
        body = data.draw(bodies(world, route), label="body")
        headers = data.draw(extra_headers(), label="headers")
        authorization = data.draw(wrong_authorizations(_key(daemon)), label="authorization")
        if authorization is not None:
            headers["Authorization"] = authorization
        answer = send(daemon, method, target, body, headers)
        assert_answered_well(method, target, answer)
        if not answer[2].startswith(AIOHTTP_OWN_REFUSALS):
            # 404 only where the path itself matches no route (e.g. an id holding a '/'); 417
            # for an `Expect:` other than 100-continue, answered before authentication.
            assert answer[0] in (401, 403, 404, 417), (
                method,
                target[:200],
                answer[0],
                answer[2][:300],
            )
        answered.append(answer[0])

    unauthenticated()
    assert answered.count(401) > len(answered) // 2, answered
    assert db_dump(daemon) == before


# ----- fixed hostile cases -----


@pytest.mark.parametrize(
    "body, status, error",
    [
        (b'{"key": "' + b"A" * MAX_BODY_BYTES + b'"}', 413, "payload_too_large"),
        (_deep(100_000, "array"), 413, "payload_too_large"),
        (_deep(30_000, "array"), 400, "bad_request"),
        (_deep(10_000, "object"), 400, "bad_request"),
        (b'{"key": "\\ud800"}', 400, "bad_request"),
        (b"\xff\xfe{}", 400, "bad_request"),
        (b'{"key": 1e999}', 400, "bad_request"),
        (b"[]", 400, "bad_request"),
    ],
    ids=[
        "over-limit",
        "deep-over-limit",
        "deep-array",
        "deep-object",
        "surrogate",
        "not-utf8",
        "inf",
        "array",
    ],
)
def test_validate_refuses_hostile_bodies_clearly(daemon, body, status, error):
    answer = send(daemon, "POST", "/v1/validate", body, {"Content-Type": "application/json"})
    assert_answered_well("POST", "/v1/validate", answer)
    got = json.loads(answer[2])
    assert answer[0] == status, got
    assert got["error"] == error, got
    assert_healthy(daemon)


TEXT_FIELDS_ROUTES = [
    (
        "POST",
        "/v1/admin/products",
        {"slug": "surrogate-test", "name": "N", "price_sats": 1},
        "name",
    ),
    (
        "POST",
        "/v1/admin/products",
        {"slug": "surrogate-test-2", "name": "N", "price_sats": 1},
        "description",
    ),
    ("POST", "/v1/admin/licenses", {"product_slug": None}, "note"),
    ("POST", "/v1/redeem", {"product": None, "code": "nope"}, "buyer_note"),
    ("POST", "/v1/machines/activate", {"key": None}, "fingerprint"),
    ("POST", "/v1/validate", {"key": None}, "hostname"),
]


@pytest.mark.parametrize("method, path, base, field", TEXT_FIELDS_ROUTES)
def test_text_that_is_not_utf8_encodable_is_refused_and_changes_nothing(
    daemon, world, method, path, base, field
):
    """A lone surrogate is valid JSON (\\ud800) but cannot be stored as UTF-8 text."""
    body = {k: (v if v is not None else _fill(k, world)) for k, v in base.items()}
    body[field] = "bad\ud800text"
    before = db_dump(daemon)
    raw = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {_key(daemon)}"}
    answer = send(daemon, method, path, raw, headers)
    assert_answered_well(method, path, answer)
    assert answer[0] in (200, 400, 404), answer
    assert db_dump(daemon) == before


def _fill(name: str, world: dict) -> str:
    lic = world["license"]
    return {
        "product_slug": world["known"][0],
        "product": world["known"][0],
        "key": lic["license_key"],
    }[name]


RAW_REQUESTS = {
    "garbage": b"GARBAGE\r\n\r\n",
    "no-version": b"GET /healthz\r\n\r\n",
    "bad-version": b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n",
    "long-target": b"GET /v1/products/" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "header-without-colon": b"GET /healthz HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n",
    "huge-header": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20_000 + b"\r\n\r\n",
    "negative-length": b"POST /v1/validate HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    "text-length": b"POST /v1/validate HTTP/1.1\r\nHost: x\r\nContent-Length: ab\r\n\r\n",
    "two-lengths": b"POST /v1/validate HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
    b"Content-Length: 5\r\n\r\n{}",
    "length-and-chunked": b"POST /v1/validate HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    "bad-chunk": b"POST /v1/validate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"zz\r\n{}\r\n0\r\n\r\n",
    "chunked-over-limit": b"POST /v1/validate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
    b"\r\n\r\n" + (b"8000\r\n" + b"A" * 0x8000 + b"\r\n") * 3 + b"0\r\n\r\n",
    "non-utf8-path": b"GET /v1/products/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
    "percent-ff-path": b"GET /v1/products/%ff%fe HTTP/1.1\r\nHost: x\r\n\r\n",
    "nul-in-path": b"GET /v1/products/a%00b HTTP/1.1\r\nHost: x\r\n\r\n",
    "absolute-form": b"GET http://evil.example/v1/pubkey HTTP/1.1\r\nHost: x\r\n\r\n",
    "asterisk-form": b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
    "unknown-method": b"BREW /v1/validate HTTP/1.1\r\nHost: x\r\n\r\n",
}


@pytest.mark.parametrize("raw", RAW_REQUESTS.values(), ids=RAW_REQUESTS.keys())
def test_malformed_http_is_answered_or_closed_never_a_server_error(daemon, raw):
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=TIMEOUT) as sock:
        try:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may refuse before reading everything
        reply = b""
        try:
            while chunk := sock.recv(65536):
                reply += chunk
        except ConnectionResetError:
            pass
    if reply:
        status_line = reply.split(b"\r\n", 1)[0]
        match = re.match(rb"^HTTP/(?:0\.9|1\.[01]) (\d{3}) ", status_line)
        assert match, reply[:300]
        assert int(match.group(1)) < 500, reply[:500]
    assert_healthy(daemon)


def _server_errors_counted(proc: DaemonProc, route: str = "") -> list[str]:
    """Requests the daemon itself counted as a 5xx (other than the documented 503), on
    routes starting with `route`."""
    status, text = proc.request("GET", "/metrics")
    assert status == 200
    return [
        line
        for line in text.splitlines()
        if line.startswith("keysmith_http_requests_total{")
        and re.search(r'status="5\d\d"', line)
        and "/v1/purchase" not in line
        and not line.rstrip().endswith(" 0.0")
    ]


def test_the_service_still_answers_correctly_after_the_fuzzing(daemon):
    """Last of the fuzz tests: the daemon is up, serving, and still answers right. (A fresh
    license: the keyed fuzz may well have revoked or suspended the ones it was shown.)"""
    assert_healthy(daemon)
    lic = issue(daemon, make_product(daemon))
    good = must(daemon.request("POST", "/v1/validate", {"key": lic["license_key"]}), 200)
    assert good["ok"] is True and good["license_id"] == lic["license_id"]
    must(admin(daemon, "POST", f"/v1/admin/licenses/{lic['license_id']}/revoke"), 200)
    revoked = must(daemon.request("POST", "/v1/validate", {"key": lic["license_key"]}), 200)
    assert revoked == {"ok": False, "reason": "revoked"}
    assert _server_errors_counted(daemon) == []
    assert "unhandled error" not in daemon.log_text()


# ----- open bugs the fuzzing found (each on its own daemon, so its log stays apart) -----


@pytest.fixture(scope="module")
def spare(tmp_path_factory):
    with DaemonProc(tmp_path_factory.mktemp("spare")) as proc:
        yield proc


def _raw(proc: DaemonProc, request: bytes, *, hang_up: bool = False) -> bytes:
    with socket.create_connection(("127.0.0.1", proc.port), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        if hang_up:
            return b""
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
            if b"\r\n\r\n" in reply and b"Connection: close" not in reply:
                break
        return reply


def _status_and_body(reply: bytes) -> tuple[int, dict]:
    head, _, body = reply.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    is_json = b"application/json" in head.lower()
    return status, json.loads(body) if is_json and body.strip() else {"raw": body[:200]}


def test_an_authorization_header_in_latin1_is_a_wrong_key_403(spare):
    before = db_dump(spare)
    reply = _raw(
        spare,
        b"POST /v1/admin/products HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Authorization: Bearer \xe9\xff\r\nContent-Type: application/json\r\n"
        b"Content-Length: 2\r\n\r\n{}",
    )
    status, body = _status_and_body(reply)
    assert (status, body.get("error")) == (403, "forbidden"), reply[:500]
    assert db_dump(spare) == before


def test_an_expect_header_in_latin1_is_refused_with_a_4xx(spare):
    reply = _raw(
        spare, b"GET /v1/pubkey HTTP/1.1\r\nHost: x\r\nConnection: close\r\nExpect: \x80\r\n\r\n"
    )
    status, _ = _status_and_body(reply)
    assert 400 <= status < 500, reply[:500]
    assert_healthy(spare)


@pytest.mark.parametrize("target", ["/v1/products/%0A", "/no/such/%0Apath"])
def test_a_path_with_an_encoded_newline_and_an_odd_expect_gets_the_json_envelope(spare, target):
    # Found by the fuzz test: a newline in the path slipped past the catch-all route, and
    # aiohttp answered `Expect: 0` itself, in plain text.
    status, ctype, raw = send(spare, "POST", target, None, {"Expect": "0"})
    assert (status, ctype.split(";")[0]) == (417, "application/json"), raw[:300]
    assert json.loads(raw)["error"] == "expectation_failed"
    status, ctype, raw = send(spare, "POST", target)
    assert status in (404, 405) and ctype.startswith("application/json"), raw[:300]


@pytest.mark.parametrize("declared", [100, 10_000_000])
def test_a_client_hanging_up_mid_body_is_not_a_server_error(spare, declared):
    _raw(
        spare,
        b"POST /v1/validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(declared).encode() + b'\r\n\r\n{"key":',
        hang_up=True,
    )
    assert_healthy(spare)  # also gives the daemon time to notice the hang-up
    assert _server_errors_counted(spare, "/v1/validate") == []
    unhandled = [
        line
        for line in spare.log_text().splitlines()
        if "unhandled error" in line and "route=/v1/validate" in line
    ]
    assert unhandled == []


@pytest.mark.parametrize("path", ["/v1/admin/licenses", "/v1/admin/discount-codes"])
def test_an_expiry_after_the_year_9999_is_refused_and_changes_nothing(spare, path):
    late = "9999-12-31T23:59:59-12:00"
    if path.endswith("licenses"):
        body = {"product_slug": make_product(spare), "expires_at": late}
    else:
        body = {"code": unique("late"), "kind": "free_license", "expires_at": late}
    before = db_dump(spare)
    status, answer = admin(spare, "POST", path, body)
    assert (status, answer.get("error")) == (400, "bad_request"), answer
    assert "expires_at" in answer["message"]
    assert db_dump(spare) == before
    assert admin(spare, "GET", path)[0] == 200  # the listing still works
