"""The one shape of every refusal: `{"ok": false, "error": CODE, "message": TEXT}`."""

from __future__ import annotations

from typing import Any

from aiohttp import web


def error_response(status: int, code: str, message: str, **extra: Any) -> web.Response:
    return web.json_response(
        {"ok": False, "error": code, "message": message, **extra}, status=status
    )


def rate_limited(wait: int, message: str) -> web.Response:
    """429 with Retry-After: `message` says what was limited; nothing was done."""
    response = error_response(
        429,
        "rate_limited",
        f"{message}; nothing was done. Retry in {wait} s",
        reason="rate_limited",
    )
    response.headers["Retry-After"] = str(wait)
    return response
