"""Ops routes, served in every mode: `GET /healthz` (the lifecycle state) and `GET /metrics`."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from daemon import __version__, metrics
from daemon.api.expect import expect_handler
from daemon.status import SERVING, Lifecycle
from daemon.storage import StorageHealth

# Set when serving: writes that fail for lack of space or a held lock degrade /healthz.
STORAGE_KEY = web.AppKey("storage", StorageHealth)

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
    # The answer changes only when the lifecycle record or the storage state does: encode it
    # once per change instead of copying and encoding the record on every probe (a third of
    # /healthz's time). A Degraded is replaced, never edited, so holding the one the answer was
    # made from and comparing identity marks a change.
    answer: dict[str, Any] = {"revision": None, "degraded": None}

    async def healthz(request: web.Request) -> web.Response:
        storage = request.app.get(STORAGE_KEY)
        degraded = storage.degraded if storage is not None else None
        if answer["revision"] != lifecycle.revision or answer["degraded"] is not degraded:
            body = healthz_body(
                lifecycle.snapshot(), None if degraded is None else degraded.as_dict()
            )
            answer.update(
                revision=lifecycle.revision,
                degraded=degraded,
                text=json.dumps(body),
                status=200 if body["ok"] else 503,
            )
        return web.Response(
            text=answer["text"], status=answer["status"], content_type="application/json"
        )

    async def metrics_route(_request: web.Request) -> web.Response:
        payload, content_type = metrics.render()
        return web.Response(body=payload, headers={"Content-Type": content_type})

    app.router.add_get("/healthz", healthz, expect_handler=expect_handler)
    app.router.add_get("/metrics", metrics_route, expect_handler=expect_handler)


def healthz_body(record: dict[str, Any], degraded: dict[str, Any] | None = None) -> dict[str, Any]:
    """The /healthz answer: Keysat-style `ok`/`status`/`version` plus Keysmith's lifecycle.

    The health command reads the same fields as the status file, so both sources agree.
    `degraded` (from `daemon.storage`) is set while database writes are refused: serving,
    reads still answered, but not ok.
    """
    serving = record.get("state") == SERVING and not record.get("safe_mode")
    body: dict[str, Any] = {
        "ok": serving and degraded is None,
        "status": "ok" if serving else "unavailable",
        "service": "keysmith",
        "version": __version__,
    }
    body.update({key: record.get(key) for key in _PUBLIC_FIELDS})
    body["degraded"] = degraded
    if not serving:
        cause = record.get("cause") or {}
        body["error"] = "safe_mode" if record.get("safe_mode") else record.get("state")
        body["message"] = cause.get("message") or f"Keysmith is {record.get('state')}"
    elif degraded is not None:
        body["status"] = "degraded"
        body["error"] = degraded["cause"]
        body["message"] = degraded["message"]
    return body
