"""Hostile validate traffic cannot grow the daemon's memory beyond its configured bounds.

Three floods a stranger can send without any key of the shop: distinct well-formed keys with
forged signatures (padded near the 4,096-character limit), distinct fingerprints on one real
license, and distinct unknown product slugs. The daemon's resident memory (VmRSS from
/proc) is read after a warm-up that already fills the verified-key cache to its byte bound,
and again after the floods; the growth must stay under a bound derived from the configured
cache size, whatever the flood's volume.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import aiohttp

from daemon.licensing import keys
from tests.daemon_proc import DaemonProc
from tests.test_api_support import issue, make_product

KEY_CACHE_BYTES = 1024 * 1024
KEY_CACHE_ENTRIES = 2_000
# What the cache may hold at most, twice over (dict and string overhead, a resize), plus
# what the allocator may keep of the request buffers of 16 concurrent connections.
RSS_BOUND = 2 * KEY_CACHE_BYTES + 8 * 1024 * 1024
WARM_UP = 1_500  # forged keys: ~6 MB of key text, six times the byte bound
FORGED = 8_000  # ~32 MB of distinct key text after the warm-up
FINGERPRINTS = 2_000
SLUGS = 2_000
CONNECTIONS = 16
# Ten entitlements of 235 bytes bring a key to about 4,020 characters, under the limit.
PADDING = tuple(f"{n}" + "x" * 234 for n in range(10))


def _forged_key() -> str:
    """A well-formed LIC1 key whose 64-byte signature is random, so it never verifies."""
    payload = keys.KeyPayload(
        product_id=uuid.uuid4(),
        license_id=uuid.uuid4(),
        issued_at=1_700_000_000,
        entitlements=PADDING,
    )
    payload_text = keys.b32encode(keys.encode_payload(payload))
    return f"{keys.KEY_PREFIX}-{payload_text}-{keys.b32encode(os.urandom(64))}"


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


async def _flood(url: str, bodies: list[dict]) -> dict[str, int]:
    """Send every body to /v1/validate over CONNECTIONS connections; count the reasons."""
    reasons: dict[str, int] = {}
    queue = iter(bodies)

    async def worker(session: aiohttp.ClientSession) -> None:
        for body in queue:
            async with session.post(f"{url}/v1/validate", json=body) as resp:
                assert resp.status == 200, await resp.text()
                answer = await resp.json()
            reason = "ok" if answer["ok"] else answer["reason"]
            reasons[reason] = reasons.get(reason, 0) + 1

    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(CONNECTIONS)))
    return reasons


def test_floods_of_forged_keys_fingerprints_and_slugs_keep_memory_bounded(tmp_path):
    env = {
        "KEYSMITH_KEY_CACHE_SIZE": str(KEY_CACHE_ENTRIES),
        "KEYSMITH_KEY_CACHE_BYTES": str(KEY_CACHE_BYTES),
    }
    with DaemonProc(tmp_path, env=env) as daemon:
        assert daemon.proc is not None
        product = make_product(daemon, seats=3)
        key = issue(daemon, product)["license_key"]
        warm_up = [{"key": _forged_key()} for _ in range(WARM_UP)]
        assert asyncio.run(_flood(daemon.url, warm_up)) == {"bad_signature": WARM_UP}
        before = _rss_bytes(daemon.proc.pid)

        forged = [{"key": _forged_key()} for _ in range(FORGED)]
        fingerprints = [{"key": key, "fingerprint": f"stranger-{n}"} for n in range(FINGERPRINTS)]
        slugs = [{"key": key, "product_slug": f"no-such-app-{n}"} for n in range(SLUGS)]
        reasons = asyncio.run(_flood(daemon.url, forged + fingerprints + slugs))
        after = _rss_bytes(daemon.proc.pid)

        # Three fingerprints took the three seats; every other request was refused.
        assert reasons == {
            "bad_signature": FORGED,
            "ok": 3,
            "too_many_machines": FINGERPRINTS - 3,
            "product_mismatch": SLUGS,
        }
        growth = after - before
        assert growth < RSS_BOUND, (
            f"RSS grew by {growth / 2**20:.1f} MiB (from {before / 2**20:.1f} MiB) under "
            f"{FORGED + FINGERPRINTS + SLUGS} hostile validations; "
            f"bound {RSS_BOUND / 2**20:.1f} MiB"
        )
        _, text = daemon.request("GET", "/metrics")
        cached = next(
            float(line.split()[1])
            for line in text.splitlines()
            if line.startswith("keysmith_key_cache_bytes ")
        )
        assert cached <= KEY_CACHE_BYTES
