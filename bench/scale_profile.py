"""Where a validate request's CPU goes: a py-spy profile of the daemon under the wrk load,
split into the stages of the request path.

py-spy samples the event-loop thread's Python stack (`--format raw`: one line per distinct
stack, frames root first, then the sample count). Each sample goes to the stage of the
innermost frame that names one; a sample whose frames name none is aiohttp's and uvloop's own
request machinery (the loop, the protocol, the task), which the bare handler pays too. The
stage's share of the samples times the run's CPU per request is its cost per request.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

# (stage, pattern on "function (file:line)"), checked from the innermost frame outwards. The
# first stage whose pattern matches a frame takes the sample; order the narrow ones first.
STAGES: tuple[tuple[str, str], ...] = (
    ("logging", r"\(logging/|daemon/logs\.py"),
    ("metrics", r"daemon/metrics\.py|prometheus_client/"),
    ("signature check (miss)", r"(^|\.)(verify_key|_remember) \(|cryptography/"),
    ("key parse", r"(^|\.)(parse_key|_decode_payload|b32decode) \(|/uuid\.py|base64\.py"),
    ("key cache lookup (hit)", r"VerifiedKeys\.identity_of \("),
    ("SQLite read (row to view)", r"LicenseReader\.(view|active_seats) \(|licensing/inputs\.py"),
    ("validate logic", r"daemon/licensing/(validation|state|answers|keys)\.py"),
    ("decode (body JSON to model)", r"(^|\.)decode \(daemon/licensing/wire\.py|msgspec"),
    ("body read", r"BaseRequest\.read \(|(^|\.)_body \(|streams\.py|asyncio/timeouts\.py"),
    ("answer encode", r"(^|\.)(encode|answer) \(daemon|Response\.__init__ \(|json_response"),
    ("rate limiter", r"ratelimit\.py|daemon/peers\.py|_limited\.<locals>|ipaddress\.py"),
    (
        "write (headers, transport)",
        r"web_response\.py|http_writer\.py|(^|\.)_?write\w* \(|finish_response \(",
    ),
    (
        "middlewares and route wrappers",
        r"daemon/api/(app|mount|routes|table|public)\.py|web_middlewares\.py",
    ),
    (
        "HTTP parsing (request line, headers)",
        r"http_parser\.py|data_received \(|web_request\.py|multidict|aiohttp/helpers\.py",
    ),
    ("routing (URL dispatch)", r"web_urldispatcher\.py"),
)
OTHER = "aiohttp/uvloop request machinery (the bare handler's too)"


def _spy() -> str | None:
    found = shutil.which("py-spy")
    beside = Path(sys.executable).parent / "py-spy"  # installed into the bench's venv
    return found or (str(beside) if beside.exists() else None)


def available() -> bool:
    return _spy() is not None


def record(pid: int, seconds: int, out: Path, cpu: str, rate: int = 250) -> bool:
    """Sample `pid` for `seconds` (py-spy pinned to `cpu`, never pausing the process);
    False when py-spy is missing or may not attach."""
    spy = _spy()
    if spy is None:
        return False
    done = subprocess.run(
        [
            *("taskset", "-c", cpu, spy, "record", "-p", str(pid), "-d", str(seconds)),
            *("-r", str(rate), "--format", "raw", "--nonblocking", "-o", str(out)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode == 0 and out.exists()


def stage_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for stage, pattern in _COMPILED:
            if pattern.search(frame):
                return stage
    return OTHER


def breakdown(raw: Path) -> dict[str, float]:
    """Each stage's share of the event-loop thread's samples (idle samples left out)."""
    counts: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [f.strip() for f in stack.split(";")]
        if not frames or ("MainThread" not in frames[0] and "(" not in frames[0]):
            continue
        if _idle(frames):
            continue
        counts[stage_of(frames)] += int(count)
    total = sum(counts.values()) or 1
    return {stage: counts[stage] / total for stage in (*(s for s, _ in STAGES), OTHER)}


def _idle(frames: list[str]) -> bool:
    """The loop waiting in select/epoll (py-spy --idle is off, but be sure), or another thread."""
    head = frames[0]
    return head.startswith("process ") is False and "Thread" in head and "MainThread" not in head


_COMPILED = tuple((stage, re.compile(pattern)) for stage, pattern in STAGES)
