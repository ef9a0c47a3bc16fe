"""The `Expect:` handler every route uses.

aiohttp answers `Expect:` before any middleware runs, and its default handler echoes the header
into a text/plain 417, which turns into a 500 when the header is not valid UTF-8. This one
answers in the JSON error envelope and never echoes what it was sent.
"""

from __future__ import annotations

from aiohttp import HttpVersion11, hdrs, web

from daemon.api.envelope import error_response


async def expect_handler(request: web.Request) -> web.Response | None:
    if request.headers.get(hdrs.EXPECT, "").lower() == "100-continue":
        if request.version == HttpVersion11:
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0  # the 100 is not part of the response body
        return None
    return error_response(417, "expectation_failed", "only 'Expect: 100-continue' is supported")
