"""Who sent a request: the peer, or the client a trusted reverse proxy says it forwarded.

On StartOS every request arrives from its proxy, so per-client limits (the API's rate limits,
the console's sign-in limits) must use the forwarded address, and only when the peer is one
of `KEYSMITH_TRUSTED_PROXIES` (`daemon.settings`): anyone else could claim any address.
"""

from __future__ import annotations

import ipaddress

from aiohttp import web

from daemon.settings import Network


def trusted(request: web.Request, proxies: tuple[Network, ...]) -> bool:
    try:
        peer = ipaddress.ip_address(request.remote or "")
    except ValueError:
        return False
    return any(peer in network for network in proxies)


def client_address(request: web.Request, proxies: tuple[Network, ...]) -> str:
    """The client's address: the peer's, or the one a trusted proxy appended to the chain."""
    forwarded = request.headers.get("X-Forwarded-For", "")
    if forwarded and trusted(request, proxies):
        return forwarded.rsplit(",", 1)[-1].strip() or (request.remote or "")
    return request.remote or ""


def over_tls(request: web.Request, proxies: tuple[Network, ...]) -> bool:
    if request.secure:
        return True
    proto = request.headers.get("X-Forwarded-Proto", "")
    return proto.strip().lower() == "https" and trusted(request, proxies)
