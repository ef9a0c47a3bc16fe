"""Run a command as a child and measure it: wall time, CPU (user+sys) and peak RSS, via wait4.

Plus the statistics (median with min and max) and the markdown tables every bench prints.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


class BenchError(RuntimeError):
    """A tool failed or did not do the work; the figures would be meaningless."""


GNU_TIME = "/usr/bin/time"  # Debian package `time`


@dataclass(frozen=True)
class Sample:
    wall: float  # seconds
    cpu: float  # seconds, user + system of the child
    rss_mb: float | None = None  # peak resident set, MiB (memory runs only)


def child_env() -> dict[str, str]:
    """This environment, minus what would make Python children slower than in production.

    PYTHONDONTWRITEBYTECODE (set in some dev and CI shells) would make every Python tool compile
    its modules from source on every run, since stale or missing .pyc files are never rewritten.
    """
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def measure(
    argv: list[str], *, cwd: Path | None = None, env: dict | None = None, memory: bool = False
) -> Sample:
    """Run `argv` to completion; raise BenchError with its output if it exits non-zero.

    Timed runs (memory=False) start the tool directly: wall and CPU, nothing in between.
    Memory runs start it under GNU time, which reports the tool's own peak RSS. wait4's
    ru_maxrss cannot be used for that: a child made by fork/vfork starts with the parent's
    resident set as its high-water mark, so every tool would show at least this script's size.
    """
    with tempfile.NamedTemporaryFile() as output, tempfile.NamedTemporaryFile("r") as rss:
        if memory:
            argv = [GNU_TIME, "-f", "%M", "-o", rss.name, *argv]
        started = time.perf_counter()
        child = subprocess.Popen(
            argv,
            cwd=cwd,
            env=child_env() if env is None else env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
        )
        # wait4 reaps the child and returns its own rusage (not the sum over every child so far).
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            output.seek(0)
            text = output.read().decode(errors="replace")[-4000:]
            raise BenchError(f"{argv[0]} ... exited {child.returncode}:\n{text}")
        # GNU time prints KiB.
        peak = int(rss.read().split()[-1]) / 1024 if memory else None
    return Sample(wall, usage.ru_utime + usage.ru_stime, peak)


def can_measure_memory() -> bool:
    return os.access(GNU_TIME, os.X_OK)


@dataclass
class Series:
    """The samples of one tool in one scenario."""

    tool: str
    samples: list[Sample] = field(default_factory=list)  # timed runs
    rss: list[float] = field(default_factory=list)  # MiB, from separate memory runs
    note: str = ""

    def median(self, attr: str = "wall") -> float:
        return statistics.median(getattr(s, attr) for s in self.samples)

    def low(self, attr: str = "wall") -> float:
        return min(getattr(s, attr) for s in self.samples)

    def high(self, attr: str = "wall") -> float:
        return max(getattr(s, attr) for s in self.samples)


def fmt_ms(seconds: float) -> str:
    millis = seconds * 1000
    return f"{millis:,.0f}" if millis >= 100 else f"{millis:.1f}"


def fmt_ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def ratio(series: Series, reference: Series | None) -> float | None:
    if reference is None or not reference.samples or not series.samples:
        return None
    return series.median() / reference.median()


def scenario_table(
    title: str, rows: list[Series], *, keysmith: Series | None, floor: Series | None
) -> str:
    """A markdown table: wall/CPU/RSS medians with [min–max], ratios to Keysmith and the floor."""
    floor_name = floor.tool if floor else "floor"
    lines = [
        f"**{title}**",
        "",
        "| tool | wall ms median [min–max] | CPU ms median [min–max] "
        f"| peak RSS MiB median [min–max] | runs | ×Keysmith | ×floor ({floor_name}) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for series in rows:
        if not series.samples:
            lines.append(f"| {series.tool} | n/a | n/a | n/a | 0 | — | — |")
            continue
        wall = f"{fmt_ms(series.median())} [{fmt_ms(series.low())}–{fmt_ms(series.high())}]"
        cpu = (
            f"{fmt_ms(series.median('cpu'))} "
            f"[{fmt_ms(series.low('cpu'))}–{fmt_ms(series.high('cpu'))}]"
        )
        rss = (
            f"{statistics.median(series.rss):.1f} [{min(series.rss):.1f}–{max(series.rss):.1f}]"
            if series.rss
            else "n/a"
        )
        lines.append(
            f"| {series.tool} | {wall} | {cpu} | {rss} "
            f"| {len(series.samples)} | {fmt_ratio(ratio(series, keysmith))} "
            f"| {fmt_ratio(ratio(series, floor))} |"
        )
    notes = [f"- {s.tool}: {s.note}" for s in rows if s.note]
    return "\n".join(lines + (["", *notes] if notes else [])) + "\n"


def target_line(label: str, series: Series | None, reference: Series | None, limit: float) -> str:
    """`label: 1.08x (target <= 1.15x) met` — or `not measured`."""
    value = ratio(series, reference) if series else None
    if value is None:
        return f"- {label}: not measured"
    verdict = "met" if value <= limit else "MISSED"
    cpu = series.median("cpu") / reference.median("cpu")
    return f"- {label}: {value:.2f}x (target <= {limit:.2f}x) {verdict}; by CPU time {cpu:.2f}x"


def load_note() -> str:
    """The load average, to print beside figures taken on a shared machine."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"
