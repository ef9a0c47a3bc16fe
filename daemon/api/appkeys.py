"""What the app keeps for its middlewares and handlers: the lifecycle, the requests in flight
and the body timeout. Its own module so that `app` (which assembles the app) and `routes`
(which reads bodies) both import it, and neither imports the other.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from daemon.status import Lifecycle


class InFlight:
    """Requests being handled now, so shutdown can wait for them before closing connections.

    aiohttp's own shutdown closes connections first and then drops body bytes still arriving,
    which would cut off a request whose body is mid-upload; waiting here avoids that.
    """

    def __init__(self) -> None:
        self.count = 0
        self.draining = False
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        self.count += 1
        self._idle.clear()

    def leave(self) -> None:
        self.count -= 1
        if self.count == 0:
            self._idle.set()

    async def drain(self, timeout: float) -> bool:
        """Wait until no request is in flight; False when `timeout` ran out first."""
        self.draining = True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True


LIFECYCLE_KEY = web.AppKey("lifecycle", Lifecycle)
IN_FLIGHT_KEY = web.AppKey("in_flight", InFlight)
BODY_TIMEOUT_KEY = web.AppKey("body_timeout", float)
