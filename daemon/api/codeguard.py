"""Discount codes cannot be guessed: every request that would tell whether a code exists
(preview, purchase with a code, redeem) passes here before the code is looked at.

Two limits (`daemon.settings` says the defaults and the arithmetic): per client address, every
code check; and, across all addresses together, the WRONG codes. The second is what stops a
guesser who rotates addresses or arrives through Tor (every client then has the proxy's
address). A check takes a token from the global bucket before the code is looked up and gives
it back when the code exists, so while the bucket is empty every check is refused, the right
code included: a refusal says nothing about the code. Taking first (not checking, then taking)
also keeps concurrent guesses within the budget.
"""

from __future__ import annotations

from aiohttp import web

from daemon import peers
from daemon.api.envelope import rate_limited
from daemon.api.ratelimit import RateLimiter
from daemon.licensing.service import Licensing
from daemon.settings import Settings

# The one bucket of wrong codes, whoever sent them.
_EVERYONE = "*"


class CodeGuard:
    def __init__(self, licensing: Licensing, settings: Settings) -> None:
        self._licensing = licensing
        self._proxies = settings.trusted_proxies
        self._per_address = RateLimiter(settings.code_checks_per_minute)
        self._wrong = RateLimiter(settings.wrong_codes_per_minute)

    async def refusal(self, request: web.Request, code: str) -> web.Response | None:
        """A 429 when this check is over a limit (nothing looked up), else None."""
        if self._per_address.enabled:
            address = peers.client_address(request, self._proxies)
            wait = self._per_address.retry_after("code", address)
            if wait:
                return rate_limited(wait, f"too many discount-code checks from {address}")
        if not self._wrong.enabled:
            return None
        wait = self._wrong.retry_after("wrong-code", _EVERYONE)
        if wait:
            return rate_limited(
                wait,
                "too many wrong discount codes were tried on this server lately, by any "
                "client, so no code is checked for now (the seller's codes are safe)",
            )
        if await self._licensing.codes.code_exists(code):
            self._wrong.give_back("wrong-code", _EVERYONE)
        return None


CODE_GUARD = web.AppKey("code_guard", CodeGuard)


async def code_refusal(request: web.Request, code: str | None) -> web.Response | None:
    """The guard's answer for a request carrying `code` (None: no code, nothing to guard)."""
    if code is None:
        return None
    return await request.app[CODE_GUARD].refusal(request, code)
