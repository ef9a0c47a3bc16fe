"""The one shape of every refusal: `{"ok": false, "error": CODE, "message": TEXT}`."""

from __future__ import annotations

from typing import Any

from aiohttp import web


def error_response(status: int, code: str, message: str, **extra: Any) -> web.Response:
    return web.json_response(
        {"ok": False, "error": code, "message": message, **extra}, status=status
    )
