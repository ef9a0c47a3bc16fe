"""Who sent a request: the peer, or the client a trusted reverse proxy says it forwarded.

On StartOS requests over HTTPS arrive from its proxy, so per-client limits (the API's rate
limits, the console's sign-in limits) must use the forwarded address, and only when the peer
is one of `KEYSMITH_TRUSTED_PROXIES` (`daemon.settings`): anyone else could claim any address.

`client_address` is the one place every limiter gets its client key. The key is always an
address in one canonical form, never text as the client sent it: a forwarded value that is not
an address counts as the peer, so a bucket key costs at most a few dozen bytes whatever a
client sends, and one client cannot spread itself over many keys by spelling its address
differently (an IPv4-mapped IPv6 address is its IPv4 address; an IPv6 zone is dropped).
An IPv6 client counts by its /64 network: one household or server is given a whole /64, and
would otherwise have 2^64 addresses to rotate through.
"""

from __future__ import annotations

import functools
import ipaddress

from aiohttp import web

from daemon.settings import Network

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
IPV6_CLIENT_PREFIX = 64
# The longest text an address can be written as (IPv6 with an embedded IPv4 and a zone is
# under this); anything longer is not parsed at all.
MAX_ADDRESS_TEXT = 64


def parse_address(text: str | None) -> Address | None:
    """`text` as an address in canonical form, or None when it is not one."""
    if not text or len(text) > MAX_ADDRESS_TEXT:
        return None
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        return ipaddress.IPv6Address(int(address))  # without its zone (`%eth0`)
    return address


def trusted(request: web.Request, proxies: tuple[Network, ...]) -> bool:
    peer = parse_address(request.remote)
    return peer is not None and any(peer in network for network in proxies)


def client_address(request: web.Request, proxies: tuple[Network, ...]) -> str:
    """The key a per-client limit counts this request under: the address a trusted proxy
    appended to X-Forwarded-For when that is an address, else the peer's own (an IPv6 one as
    its /64). Never longer than an IPv6 network written out."""
    forwarded = request.headers.get("X-Forwarded-For", "")
    if forwarded and trusted(request, proxies):
        key = _client_key(forwarded.rsplit(",", 1)[-1])
        if key is not None:
            return key
    # Not an IP peer (a Unix socket): one key for all of them.
    return _client_key(request.remote) or "unknown"


def _client_key(text: str | None) -> str | None:
    if not text or len(text) > MAX_ADDRESS_TEXT:
        return None
    return _canonical_key(text)


# Parsing and writing out an address costs more than the rest of a rate-limit check; the same
# few peers send request after request. Keys of at most MAX_ADDRESS_TEXT characters: bounded.
@functools.lru_cache(maxsize=4096)
def _canonical_key(text: str) -> str | None:
    address = parse_address(text)
    if address is None:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False))
    return str(address)


def over_tls(request: web.Request, proxies: tuple[Network, ...]) -> bool:
    if request.secure:
        return True
    proto = request.headers.get("X-Forwarded-Proto", "")
    return proto.strip().lower() == "https" and trusted(request, proxies)
