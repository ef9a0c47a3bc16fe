"""The console refuses what the admin API refuses, with the same message: both read a
seller's input through the same request models (`daemon.licensing.models`).

The API side is the real daemon over HTTP; the console side is the console's adapter
(`daemon.console.ops`) on the same kind of real database, in process (the browser tests
drive the pages themselves).
"""

from __future__ import annotations

import asyncio

import pytest

from daemon.console import ops
from daemon.db import init
from daemon.licensing.service import Licensing
from tests.test_api_support import admin, db_dump, must, serving_daemon

daemon = pytest.fixture(scope="module", name="daemon")(serving_daemon)

# (console form, the JSON body the API gets for it, the form field the console names)
PRODUCT_CASES = [
    ({"slug": "Bad Slug", "name": "N", "price_sats": "1"}, {"slug": "Bad Slug"}, "slug"),
    ({"slug": "ok", "name": "N", "price_sats": "-5"}, {"price_sats": -5}, "price_sats"),
    ({"slug": "ok", "name": "N", "price_sats": "lots"}, {"price_sats": "lots"}, "price_sats"),
    ({"slug": "ok", "name": "", "price_sats": "1"}, {"name": None}, "name"),
    ({"slug": "ok", "name": "x" * 201, "price_sats": "1"}, {"name": "x" * 201}, "name"),
]


def _console_refusal(tmp_path, form: dict[str, str]) -> ops.Refused:
    async def run() -> ops.Refused:
        pool = await init(tmp_path / "console.db")
        service = await Licensing.open(pool, admin_api_key="k" * 32)
        try:
            with pytest.raises(ops.Refused) as refused:
                await ops.create_product(service, form)
            return refused.value
        finally:
            service.close()
            await pool.close()

    return asyncio.run(run())


@pytest.mark.parametrize("form, change, field", PRODUCT_CASES)
def test_a_product_form_is_refused_as_the_api_refuses_its_json(
    daemon, tmp_path, form, change, field
):
    body = {"slug": "ok", "name": "N", "price_sats": 1, **change}
    body = {name: value for name, value in body.items() if value is not None}
    before = db_dump(daemon)
    api = must(admin(daemon, "POST", "/v1/admin/products", body), 400)
    assert db_dump(daemon) == before
    refused = _console_refusal(tmp_path, form)
    assert (refused.message, refused.field, refused.status) == (api["message"], field, 400)
