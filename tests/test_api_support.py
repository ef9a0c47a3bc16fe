"""Shared pieces for the licensing API tests (no tests of its own).

Every API test talks to the real daemon (`python -m daemon serve`, a subprocess on a
loopback port, with a real SQLite file) over HTTP; the database is read directly, read-only,
to prove what was and was not written.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import pytest

from tests import kit
from tests.daemon_proc import DaemonProc


def serving_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProc]:
    """One daemon per test module; use as
    `daemon = pytest.fixture(scope="module", name="daemon")(serving_daemon)`."""
    with DaemonProc(tmp_path_factory.mktemp("daemon")) as proc:
        assert proc.status()["state"] == "serving", proc.log_text()
        yield proc


def admin(proc: DaemonProc, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    return proc.request(method, path, body, headers=proc.admin_headers())


def must(answer: tuple[int, Any], status: int) -> Any:
    got, body = answer
    assert got == status, f"expected HTTP {status}, got {got}: {body}"
    return body


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def make_product(proc: DaemonProc, *, seats: int = 1, **policy: Any) -> str:
    """A product with a default policy of `seats` machines; returns the product slug."""
    slug = unique("app")
    must(
        admin(
            proc,
            "POST",
            "/v1/admin/products",
            {"slug": slug, "name": f"App {slug}", "price_sats": 50_000},
        ),
        200,
    )
    must(
        admin(
            proc,
            "POST",
            "/v1/admin/policies",
            {
                "product_slug": slug,
                "slug": "standard",
                "name": "Standard",
                "max_machines": seats,
                "is_default": True,
                **policy,
            },
        ),
        200,
    )
    return slug


def tiered_product(proc: DaemonProc) -> str:
    """A product (10,000 sats, a "sync" entitlement in its catalog) with four tiers: public
    "trial" (sort order 1, 7 days) and "pro" (sort order 2, 30,000 sats, 3 seats, sync,
    highlighted), private "internal", and "legacy", deactivated. Returns its slug."""
    product = unique("tiers")
    must(
        admin(
            proc,
            "POST",
            "/v1/admin/products",
            {
                "slug": product,
                "name": "Tiered",
                "description": "An app with tiers",
                "price_sats": 10_000,
                "entitlements_catalog": [{"slug": "sync", "name": "Cloud sync"}],
            },
        ),
        200,
    )
    tiers = [
        {
            "slug": "pro",
            "name": "Pro",
            "price_sats_override": 30_000,
            "max_machines": 3,
            "entitlements": ["sync"],
            "highlighted": True,
            "sort_order": 2,
        },
        {
            "slug": "trial",
            "name": "Trial",
            "duration_seconds": 7 * 86_400,
            "is_trial": True,
            "sort_order": 1,
        },
        {"slug": "internal", "name": "Staff", "public": False},
        {"slug": "legacy", "name": "Legacy"},
    ]
    ids = {}
    for tier in tiers:
        ids[tier["slug"]] = must(
            admin(proc, "POST", "/v1/admin/policies", {"product_slug": product, **tier}), 200
        )["id"]
    must(admin(proc, "PATCH", f"/v1/admin/policies/{ids['legacy']}/active", {"active": False}), 200)
    return product


def issue(proc: DaemonProc, product_slug: str, **extra: Any) -> dict[str, Any]:
    return must(
        admin(proc, "POST", "/v1/admin/licenses", {"product_slug": product_slug, **extra}), 200
    )


def flip_one_payload_char(key: str) -> str:
    """The key with one payload character changed: well-formed, but the signature no longer
    matches."""
    prefix, payload, signature = key.split("-")
    middle = len(payload) // 2
    swapped = "B" if payload[middle] != "B" else "C"
    return f"{prefix}-{payload[:middle]}{swapped}{payload[middle + 1 :]}-{signature}"


def read_db(proc: DaemonProc) -> sqlite3.Connection:
    """Read-only, so a test can never write behind the daemon's back."""
    return sqlite3.connect(f"file:{proc.db_path}?mode=ro", uri=True)


def db_dump(proc: DaemonProc) -> str:
    with closing(read_db(proc)) as conn:
        return kit.dump(conn)


def rows(proc: DaemonProc, sql: str, *params: Any) -> list[tuple]:
    with closing(read_db(proc)) as conn:
        return conn.execute(sql, params).fetchall()
