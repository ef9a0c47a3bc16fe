"""Describe the machine the figures were taken on (for RESULTS.md and the console)."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from pathlib import Path

from harness import load_note


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def describe(tool_versions: dict[str, str]) -> str:
    """A markdown bullet list: CPU, cores, RAM, kernel, load, and every tool's version."""
    lines = [
        f"- taken: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- CPU: {_cpu_model()}, {os.cpu_count()} cores visible",
        f"- RAM: {_memory()}",
        f"- kernel: {platform.system()} {platform.release()} ({platform.machine()})",
        f"- load when the run started: {load_note()}",
    ]
    lines += [f"- {name}: {version}" for name, version in tool_versions.items()]
    return "\n".join(lines) + "\n"
