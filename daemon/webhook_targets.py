"""Where a webhook may be sent: to public addresses, and to the networks the operator allows.

Whoever may create a webhook endpoint chooses the URL the daemon posts to. Without this rule
that makes the daemon a client inside the seller's own network: the box's other services on
loopback, the cloud metadata service on link-local 169.254.169.254, the LAN. So a destination
is refused when its address is loopback, link-local, unspecified, multicast, private or
otherwise not public (IPv4-mapped IPv6 addresses are judged by the IPv4 address they carry),
unless it lies in a network of `KEYSMITH_WEBHOOK_ALLOW_NETWORKS`.

The rule is applied twice: when an endpoint is created, to a host written as an address
(`host_refusal`, for a clear error naming the field); and to every address the sender
connects to, after DNS resolution and at each attempt (`address_refusal`), since a name can
resolve differently from one attempt to the next. Knows nothing of HTTP.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Literal

from daemon.settings import WEBHOOK_ALLOW_VARIABLE, Network

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
NonPublic = Literal["loopback", "link-local", "unspecified", "multicast", "private", "reserved"]
# NAT64 (RFC 6052) carries an IPv4 address in its last 32 bits, as IPv4-mapped addresses do.
NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Names that resolve to loopback by definition (RFC 6761), refused at creation like 127.0.0.1.
LOOPBACK_NAMES = ("localhost", "localhost.")
REMEDY = (
    "webhooks go to public addresses only; to send to this network (a service on the same "
    f"machine or LAN), the operator adds it to {WEBHOOK_ALLOW_VARIABLE} (on StartOS: the "
    "action 'Server limits', field 'Webhook private networks', then a restart)"
)


def address_refusal(address: Address, allowed: tuple[Network, ...]) -> NonPublic | None:
    """Why the sender may not connect to `address` (what kind of address it is), or None."""
    address = _carried_ipv4(address)
    if any(address in network for network in allowed):
        return None
    return _non_public(address)


def host_refusal(host: str, allowed: tuple[Network, ...]) -> str | None:
    """For a URL's host written as an address (or `localhost`): why it is refused, in words
    for the person creating the endpoint; None for a name (checked when resolved) or a
    public or allowed address."""
    if host.lower() in LOOPBACK_NAMES or host.lower().endswith(".localhost"):
        kind: NonPublic | None = address_refusal(ipaddress.IPv4Address("127.0.0.1"), allowed)
    else:
        address = _literal(host)
        kind = None if address is None else address_refusal(address, allowed)
    return None if kind is None else f"{host} is not a public address ({kind}): {REMEDY}"


def _non_public(address: Address) -> NonPublic | None:
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "reserved"  # shared (100.64/10), documentation, benchmarking, future use
    return None


def _carried_ipv4(address: Address) -> Address:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def _literal(host: str) -> Address | None:
    """The address a host written as one stands for, including the legacy IPv4 forms
    (`127.1`, `0x7f000001`, `2130706433`) that the C library still accepts; None for a name."""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        pass
    if host[:1].isdigit():
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None
