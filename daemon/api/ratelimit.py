"""Per-client rate limits on the public routes a flood would hurt (the route table's
`rate_group`s; one bucket per group and client address), and the discount-code guard's.

A token bucket per (group, address): `per_minute` tokens, refilled continuously, the same
number as the burst. The address is `daemon.peers.client_address`: the forwarded one only
behind a trusted proxy, and always an address in canonical form (at most 24 characters), never
text as a client sent it. Buckets are kept for the most recently seen addresses only (an LRU
of MAX_BUCKETS), so memory is bounded in bytes: about 350 bytes a bucket, 35 MB at most
(measured with tracemalloc; tests/test_attack_trust.py floods the real daemon). A forgotten
bucket is a full one, which at worst lets an evicted address start over.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict

MAX_BUCKETS = 100_000


class RateLimiter:
    def __init__(self, per_minute: int) -> None:
        self._capacity = float(per_minute)
        self._per_second = per_minute / 60.0
        self._buckets: OrderedDict[tuple[str, str], tuple[float, float]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self._capacity > 0

    def retry_after(self, group: str, address: str) -> int:
        """0 when the request may go ahead (a token is taken), else whole seconds to wait."""
        at = time.monotonic()
        key = (group, address)
        tokens, last = self._buckets.pop(key, (self._capacity, at))
        tokens = min(self._capacity, tokens + (at - last) * self._per_second)
        wait = 0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = max(1, math.ceil((1.0 - tokens) / self._per_second))
        self._buckets[key] = (tokens, at)
        if len(self._buckets) > MAX_BUCKETS:
            self._buckets.popitem(last=False)
        return wait

    def give_back(self, group: str, address: str) -> None:
        """Return the token a request took (it turned out not to count against the limit)."""
        key = (group, address)
        if key in self._buckets:
            tokens, last = self._buckets[key]
            self._buckets[key] = (min(self._capacity, tokens + 1.0), last)
