"""Ops routes, served in every mode: `GET /healthz` (the lifecycle state) and `GET /metrics`."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from daemon import __version__, metrics
from daemon.api.expect import expect_handler
from daemon.status import SERVING, Lifecycle

# Fields of the lifecycle record that /healthz shows; the rest is bookkeeping for the next boot.
_PUBLIC_FIELDS = (
    "state",
    "safe_mode",
    "schema_version",
    "applied",
    "heals",
    "progress",
    "cause",
    "consecutive_failed_boots",
    "last_failure",
    "previous_unclean",
    "boot_started_at",
    "pid",
)


def add_ops_routes(app: web.Application, lifecycle: Lifecycle) -> None:
    # The answer changes only when the lifecycle record does: encode it once per revision
    # instead of copying and encoding the record on every probe (a third of /healthz's time).
    answer: dict[str, Any] = {"revision": None}

    async def healthz(_request: web.Request) -> web.Response:
        revision = lifecycle.revision
        if answer["revision"] != revision:
            body = healthz_body(lifecycle.snapshot())
            answer.update(
                revision=revision, text=json.dumps(body), status=200 if body["ok"] else 503
            )
        return web.Response(
            text=answer["text"], status=answer["status"], content_type="application/json"
        )

    async def metrics_route(_request: web.Request) -> web.Response:
        payload, content_type = metrics.render()
        return web.Response(body=payload, headers={"Content-Type": content_type})

    app.router.add_get("/healthz", healthz, expect_handler=expect_handler)
    app.router.add_get("/metrics", metrics_route, expect_handler=expect_handler)


def healthz_body(record: dict[str, Any]) -> dict[str, Any]:
    """The /healthz answer: Keysat-style `ok`/`status`/`version` plus Keysmith's lifecycle.

    The health command reads the same fields as the status file, so both sources agree.
    """
    serving = record.get("state") == SERVING and not record.get("safe_mode")
    body: dict[str, Any] = {
        "ok": serving,
        "status": "ok" if serving else "unavailable",
        "service": "keysmith",
        "version": __version__,
    }
    body.update({key: record.get(key) for key in _PUBLIC_FIELDS})
    if not serving:
        cause = record.get("cause") or {}
        body["error"] = "safe_mode" if record.get("safe_mode") else record.get("state")
        body["message"] = cause.get("message") or f"Keysmith is {record.get('state')}"
    return body
