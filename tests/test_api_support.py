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


def issue(proc: DaemonProc, product_slug: str, **extra: Any) -> dict[str, Any]:
    return must(
        admin(proc, "POST", "/v1/admin/licenses", {"product_slug": product_slug, **extra}), 200
    )


def read_db(proc: DaemonProc) -> sqlite3.Connection:
    """Read-only, so a test can never write behind the daemon's back."""
    return sqlite3.connect(f"file:{proc.db_path}?mode=ro", uri=True)


def db_dump(proc: DaemonProc) -> str:
    with closing(read_db(proc)) as conn:
        return kit.dump(conn)


def rows(proc: DaemonProc, sql: str, *params: Any) -> list[tuple]:
    with closing(read_db(proc)) as conn:
        return conn.execute(sql, params).fetchall()
