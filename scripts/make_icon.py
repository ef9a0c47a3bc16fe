"""Draw icon.png (256x256): a gold key on a dark rounded square. Pure stdlib, deterministic.

    python3 scripts/make_icon.py [OUT]   # default: icon.png at the repository root

The marketplace limit is 100 KiB; this comes out at a few KiB.
"""

from __future__ import annotations

import math
import struct
import sys
import zlib
from pathlib import Path

SIZE = 256
BACKGROUND = (24, 32, 48)
KEY = (232, 182, 64)
SUPERSAMPLE = 4  # samples per axis per pixel, for smooth edges


def _inside_rounded_square(x: float, y: float) -> bool:
    radius, lo, hi = 48.0, 8.0, SIZE - 8.0
    cx = min(max(x, lo + radius), hi - radius)
    cy = min(max(y, lo + radius), hi - radius)
    return lo <= x <= hi and lo <= y <= hi and math.hypot(x - cx, y - cy) <= radius


def _inside_key(x: float, y: float) -> bool:
    # Rotate the plane 45 degrees so the key lies diagonally, bow at the top left.
    u = (x + y) / math.sqrt(2) - 181.0
    v = (y - x) / math.sqrt(2)
    bow = math.hypot(u + 62, v) <= 42 and math.hypot(u + 62, v) >= 18
    shaft = -24 <= u <= 92 and -9 <= v <= 9
    teeth = (60 <= u <= 74 or 80 <= u <= 92) and 9 <= v <= 30
    return bow or shaft or teeth


def _pixel(px: int, py: int) -> tuple[int, int, int, int]:
    inside = key = 0
    for sy in range(SUPERSAMPLE):
        for sx in range(SUPERSAMPLE):
            x = px + (sx + 0.5) / SUPERSAMPLE
            y = py + (sy + 0.5) / SUPERSAMPLE
            if _inside_rounded_square(x, y):
                inside += 1
                key += _inside_key(x, y)
    samples = SUPERSAMPLE * SUPERSAMPLE
    if not inside:
        return (0, 0, 0, 0)
    mix = key / inside
    rgb = tuple(round(b + (k - b) * mix) for b, k in zip(BACKGROUND, KEY, strict=True))
    return (*rgb, round(255 * inside / samples))


def png_bytes() -> bytes:
    rows = b"".join(
        b"\x00" + bytes(c for px in range(SIZE) for c in _pixel(px, py)) for py in range(SIZE)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", SIZE, SIZE, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent.parent / "icon.png"
    out.write_bytes(png_bytes())
    print(f"{out}: {out.stat().st_size} bytes")
