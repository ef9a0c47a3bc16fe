"""Admin routes about the shop itself, in Keysat's shapes: the operator's display name
(`/v1/admin/settings/operator-name`), the database's figures (`/v1/admin/db-info`) and
the issuer key brought from elsewhere (`/v1/admin/import-issuer-key`).
Master key only, as Keysat's `require_admin` (its read of the name takes `settings:read`,
a scope Keysmith's keys do not have)."""

from __future__ import annotations

from aiohttp import web

from daemon.api.routes import admin_endpoint, answer, licensing_of
from daemon.api.table import PemText
from daemon.licensing import answers, models
from daemon.licensing.access import MASTER

NAME_PATH = "/v1/admin/settings/operator-name"


@admin_endpoint(
    "GET", NAME_PATH, "The operator's display name (shown by GET /)", scope=MASTER,
    answer=answers.OperatorName,
)  # fmt: skip
async def get_operator_name(request: web.Request) -> web.Response:
    return answer(await licensing_of(request).operator.operator_name_info())


@admin_endpoint(
    "POST", NAME_PATH, "Set the operator's display name; an empty one clears it", scope=MASTER,
    body=models.OperatorNameSet, answer=answers.OperatorNameSet,
)  # fmt: skip
async def set_operator_name(request: web.Request, body: models.OperatorNameSet) -> web.Response:
    return answer(await licensing_of(request).operator.set_operator_name(body.name))


@admin_endpoint(
    "GET", "/v1/admin/db-info", "The database file, its size, last write and row counts",
    scope=MASTER, answer=answers.DbInfo,
)  # fmt: skip
async def db_info(request: web.Request) -> web.Response:
    return answer(await licensing_of(request).operator.db_info())


@admin_endpoint(
    "POST", "/v1/admin/import-issuer-key",
    "Sign with this Ed25519 private key (PEM body), only while no license exists",
    scope=MASTER, body=PemText, answer=answers.IssuerKeyImported,
)  # fmt: skip
async def import_issuer_key(request: web.Request, body: str) -> web.Response:
    return answer(await licensing_of(request).operator.import_issuer_key(body))
