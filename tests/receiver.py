"""A real webhook receiver for tests: an aiohttp server on loopback, in a thread of its own.

`Receiver()` as a context manager listens on a free port of 127.0.0.1 (or `host`); `.url` is
its endpoint. `.mode` says how it answers, and can be changed while it runs: `ok` (200),
`down` (503), `hang` (never answers), `huge` (500 with a 10 MB body: a failed delivery, so
the sender keeps retrying it and keeps meeting the 10 MB), `redirect` (307 to `/elsewhere`),
`leaky` (500 whose reason phrase and body hold `LEAKED_SECRET`, as an internal service's
error page might). `.delay`
seconds pass before each answer (a receiver that takes its time). Every request it sees is
kept in `.seen` (headers and raw body), whatever it answered.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

from tests.daemon_proc import free_port

Mode = Literal["ok", "down", "hang", "huge", "redirect", "leaky"]
HUGE_BYTES = 10 * 1024 * 1024
LEAKED_SECRET = "INTERNAL-SECRET root-token=3f9a1c"
# The receiver listens on loopback, where webhooks are refused by default (daemon.webhook_targets):
# a daemon that is to deliver to it must be started with this setting.
ALLOW_LOOPBACK = {"KEYSMITH_WEBHOOK_ALLOW_NETWORKS": "127.0.0.1/32"}


@dataclass(frozen=True)
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: Mode

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)

    def signed_by(self, secret: str) -> bool:
        expected = "sha256=" + hmac.new(secret.encode(), self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(self.headers.get("X-Keysat-Signature", ""), expected)


class Receiver:
    def __init__(self, mode: Mode = "ok", delay: float = 0.0, host: str = "127.0.0.1") -> None:
        self.mode: Mode = mode
        self.delay = delay
        self.host = host
        self.port = free_port()
        self.url = f"http://{host}:{self.port}/hook"
        self.seen: list[Seen] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._runner: web.AppRunner | None = None

    def __enter__(self) -> Receiver:
        self._thread.start()
        assert self._ready.wait(10), "the test receiver did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def delivered(self) -> list[Seen]:
        """The requests it answered 200 to, in the order they came."""
        return [s for s in self.seen if s.answered == "ok"]

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Seen]:
        deadline = time.monotonic() + timeout
        while len(self.delivered()) < count:
            assert time.monotonic() < deadline, f"{len(self.delivered())} of {count} arrived"
            time.sleep(0.05)
        return self.delivered()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, self.host, self.port)
        self._loop.run_until_complete(site.start())
        self._ready.set()
        self._loop.run_forever()

    async def _stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()
        # A hanging answer is still asleep: end it, so nothing is left pending.
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.cancel()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        mode = self.mode
        body = await request.read()
        self.seen.append(Seen(request.path, dict(request.headers), body, mode))
        await asyncio.sleep(self.delay)
        if mode == "ok":
            return web.Response(text="thanks")
        if mode == "down":
            return web.Response(status=503, text="down for maintenance")
        if mode == "leaky":
            return web.Response(status=500, reason=LEAKED_SECRET, text=f"{LEAKED_SECRET}\n")
        if mode == "hang":
            await asyncio.sleep(3600)
        if mode == "huge":
            response = web.StreamResponse(status=500)
            response.content_length = HUGE_BYTES
            await response.prepare(request)
            chunk = b"x" * 65536
            try:
                for _ in range(HUGE_BYTES // len(chunk)):
                    await response.write(chunk)
            except ConnectionError:
                pass  # the sender read what it wanted and hung up: what a bounded read does
            return response
        raise web.HTTPTemporaryRedirect("/elsewhere")
