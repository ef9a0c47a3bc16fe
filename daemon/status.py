"""The lifecycle status file on the data volume: what the daemon is doing, and why it stopped.

The health check reads this file when HTTP does not answer, and the next boot reads it to count
boots that crashed, so it is written atomically (temp file, fsync, rename, fsync of the folder):
a reader sees the old record or the new one, never half of each.

Kept free of heavy imports: the health check imports it every 15 seconds.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

STARTING = "starting"
MIGRATING = "migrating"
SERVING = "serving"
BLOCKED = "blocked"
FAILED = "failed"
STOPPED = "stopped"
STATES = (STARTING, MIGRATING, SERVING, BLOCKED, FAILED, STOPPED)

# After this many boots in a row that ended without a clean stop, the next boot does not touch
# the database: whatever killed them (often during a migration) would likely kill it too.
CRASH_LIMIT = 3
# One line per boot that reached serving or safe mode, beside the status file (which keeps only
# the current boot), so the console can show every boot's migration run. Bounded: the oldest
# lines go once there are more.
BOOTS_FILE_NAME = "keysmith-boots.jsonl"
BOOT_HISTORY_LIMIT = 50

log = logging.getLogger("keysmith.boot")


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data` so that a crash leaves either the old or the new content."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)  # the umask must not widen or narrow it
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_status(path: Path) -> dict[str, Any] | None:
    """The last record written, or None when there is none or it cannot be read."""
    try:
        record = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("state") in STATES else None


def boots_path(status_path: Path) -> Path:
    return status_path.with_name(BOOTS_FILE_NAME)


def read_boots(path: Path) -> list[dict[str, Any]]:
    """Every recorded boot, newest first; an unreadable line is skipped, not fatal."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError:
        return []
    boots = []
    for line in reversed(lines):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            boots.append(entry)
    return boots


def append_boot(path: Path, entry: dict[str, Any]) -> None:
    """Add one boot's line, keeping the newest BOOT_HISTORY_LIMIT (atomically, like the status
    file: a crash leaves the old history or the new one)."""
    try:
        kept = path.read_bytes().splitlines()[-(BOOT_HISTORY_LIMIT - 1) :]
    except FileNotFoundError:
        kept = []
    line = json.dumps(entry, sort_keys=True).encode()
    write_atomic(path, b"".join(k + b"\n" for k in (*kept, line)))


def pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Cause:
    """Why the daemon is in safe mode, written for the operator."""

    # blocked, migration_failed, settings, crash_loop, downgrade_prepared, port, database,
    # exception
    kind: str
    message: str  # what happened
    remedy: str  # what to do next
    data_intact: bool | None  # None when we cannot tell
    blockers: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "message": self.message,
            "remedy": self.remedy,
            "data_intact": self.data_intact,
            "blockers": self.blockers,
        }


@dataclass(frozen=True)
class BootHistory:
    """What the previous runs tell this boot."""

    failed_before: int  # consecutive earlier boots that did not serve or did not stop cleanly
    crashes_before: int  # consecutive earlier boots that ended without a clean stop
    last_failure: str | None  # the cause of the most recent of those, for the operator
    previous_unclean: str | None  # set when the previous run did not stop cleanly


def history_from(previous: dict[str, Any] | None) -> BootHistory:
    if previous is None:
        return BootHistory(0, 0, None, None)
    if _another_daemon_still_running(previous):
        # Not a previous run at all: a second daemon on the same data folder, still alive. It
        # did not crash, so it does not count towards the crash loop.
        return BootHistory(
            _count(previous.get("failed_before")),
            _count(previous.get("crashes_before")),
            None,
            None,
        )
    clean = previous.get("clean_stop") is True
    served = previous.get("reached_serving") is True
    # A run that served past the healthy-serving window (Settings.healthy_serving_seconds)
    # breaks the chain however it ended.
    healthy = previous.get("served_healthily") is True
    crashes = 0 if clean or healthy else _count(previous.get("crashes_before")) + 1
    if clean and served:
        return BootHistory(0, crashes, None, None)
    failed = _count(previous.get("failed_before")) + 1
    unclean = None if clean else _describe_unclean(previous)
    cause = previous.get("cause")
    message = cause.get("message") if isinstance(cause, dict) else None
    last = unclean or message or f"the previous run ended in state {previous['state']}"
    return BootHistory(failed, crashes, last, unclean)


def _another_daemon_still_running(previous: dict[str, Any]) -> bool:
    pid = previous.get("pid")
    if not isinstance(pid, int) or pid == os.getpid():
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            argv = handle.read().split(b"\0")
    except OSError:
        return False  # gone: the previous run really ended
    # A recycled pid belongs to some other program; only a live `daemon serve` is a daemon.
    return b"daemon" in argv and b"serve" in argv


def _count(value: object) -> int:
    # A hand-edited or foreign status file must not crash the boot that reads it.
    return value if isinstance(value, int) and value >= 0 else 0


def _describe_unclean(previous: dict[str, Any]) -> str:
    state = previous.get("state")
    where = f"while {state}"
    progress = previous.get("progress")
    if state == MIGRATING and isinstance(progress, dict):
        where = (
            f"while migrating (version {progress.get('version')}, "
            f"{progress.get('index')} of {progress.get('total')})"
        )
    return (
        f"the previous run (pid {previous.get('pid')}, started {previous.get('boot_started_at')}) "
        f"did not stop cleanly: it was killed or crashed {where}"
    )


class Lifecycle:
    """The current boot's record, kept in memory and mirrored to the status file.

    A status file that cannot be written (full or read-only disk) must not stop the daemon:
    the record stays in memory for `/healthz`, and the failure is logged once.
    """

    def __init__(self, path: Path, *, version: str, bind: str, history: BootHistory) -> None:
        self.path = path
        self.history = history
        self._lock = threading.Lock()
        # Counts updates, so readers can reuse what they derived from an unchanged record.
        self.revision = 0
        self._write_failed = False
        self._started_monotonic = time.monotonic()
        self._record: dict[str, Any] = {
            "service": "keysmith",
            "state": STARTING,
            "safe_mode": False,
            "pid": os.getpid(),
            "daemon_version": version,
            "boot_started_at": utc_now(),
            "updated_at": utc_now(),
            "bind": bind,
            "http": False,
            "progress": None,
            "schema_version": None,
            "applied": [],
            "heals": [],
            "cause": None,
            "reached_serving": False,
            "served_healthily": False,
            "clean_stop": False,
            "failed_before": history.failed_before,
            "crashes_before": history.crashes_before,
            "consecutive_failed_boots": history.failed_before,
            "last_failure": history.last_failure,
            "previous_unclean": history.previous_unclean,
        }

    @property
    def state(self) -> str:
        return self._record["state"]

    @property
    def safe_mode(self) -> bool:
        return bool(self._record["safe_mode"])

    @property
    def cause(self) -> dict[str, Any] | None:
        return self._record["cause"]

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return json.loads(json.dumps(self._record))

    def update(self, **fields: Any) -> None:
        """Change fields of the record and write it out."""
        with self._lock:
            self._record.update(fields)
            self._record["updated_at"] = utc_now()
            self.revision += 1
            self._write_locked()

    def enter_safe_mode(self, state: str, cause: Cause, **fields: Any) -> None:
        self.update(
            **fields,
            state=state,
            safe_mode=True,
            cause=cause.as_dict(),
            progress=None,
            consecutive_failed_boots=self.history.failed_before + 1,
            last_failure=cause.message,
        )
        self._record_boot()

    def mark_serving(self, **fields: Any) -> None:
        # A boot that serves ends the run of failed boots: it shows 0 from now on (the next
        # boot still reads how the earlier ones ended from `failed_before`, left as it was).
        self.update(
            state=SERVING, reached_serving=True, progress=None, consecutive_failed_boots=0, **fields
        )
        self._record_boot()

    def _record_boot(self) -> None:
        """This boot's outcome, appended to the boot history (see BOOTS_FILE_NAME)."""
        record = self.snapshot()
        entry = {
            key: record.get(key)
            for key in (
                "boot_started_at",
                "updated_at",
                "daemon_version",
                "state",
                "schema_version",
                "applied",
                "heals",
                "cause",
                "previous_unclean",
            )
        }
        try:
            append_boot(boots_path(self.path), entry)
        except OSError as e:
            log.error(
                "cannot append to the boot history; the console will not list this boot",
                extra={"path": str(boots_path(self.path)), "error": f"{type(e).__name__}: {e}"},
            )

    def mark_served_healthily(self) -> None:
        """Called the healthy-serving window after serving began, if still serving: from now on
        an unclean end of this run does not count towards the crash loop."""
        if self.state == SERVING:
            self.update(served_healthily=True)

    def mark_stopped(self) -> None:
        with self._lock:
            last = self._record["state"]
        self.update(state=STOPPED, last_state=last, clean_stop=True, http=False, progress=None)

    def _write_locked(self) -> None:
        data = json.dumps(self._record, indent=2, sort_keys=True).encode() + b"\n"
        try:
            write_atomic(self.path, data)
        except OSError as e:
            if not self._write_failed:
                log.error(
                    "cannot write the status file; the health check will rely on HTTP only",
                    extra={"path": str(self.path), "error": f"{type(e).__name__}: {e}"},
                )
            self._write_failed = True
        else:
            self._write_failed = False
