"""`python -m daemon health`: the StartOS health check, exec'd inside the container.

Asks the daemon's `/healthz` on loopback with a short timeout; when nothing (or something other
than Keysmith) answers, reads the status file the daemon keeps on the data volume. Exit codes
are StartOS's: 0 ready, 60 starting, 61 loading (stderr is the progress shown), anything else a
failure whose stderr the operator reads. Imports only the standard library and the two small
modules it shares with the daemon: this runs every 15 seconds.
"""

from __future__ import annotations

import http.client
import json
import sys
from typing import Any

from daemon.settings import Settings
from daemon.status import (
    BLOCKED,
    FAILED,
    MIGRATING,
    SERVING,
    STARTING,
    STOPPED,
    pid_alive,
    read_status,
)

EXIT_READY = 0
EXIT_FAILURE = 1
EXIT_STARTING = 60
EXIT_LOADING = 61
HTTP_TIMEOUT = 2.0


def health_main() -> int:
    settings, _errors = Settings.lenient()
    code, out, err = check(settings)
    if out:
        print(out)
    if err:
        print(err, file=sys.stderr)
    return code


def check(settings: Settings, timeout: float = HTTP_TIMEOUT) -> tuple[int, str, str]:
    """Decide the health exit code, stdout and stderr for the daemon these settings describe."""
    status = read_status(settings.status_path)
    answer = ask_healthz(settings.bind_host, settings.bind_port, timeout)
    if answer is not None and _same_daemon(answer, status):
        return verdict(answer)
    record = status
    if record is None:
        return (
            EXIT_FAILURE,
            "",
            (
                f"Keysmith is not answering on {settings.bind} and has written no status file at "
                f"{settings.status_path}. It may have failed before it could record anything: "
                "read the service logs for the cause, then restart the service."
            ),
        )
    if record["state"] == STOPPED or not pid_alive(record.get("pid")):
        return EXIT_FAILURE, "", _not_running(record)
    if record["state"] == SERVING:
        return (
            EXIT_FAILURE,
            "",
            (
                f"Keysmith is running but did not answer {settings.bind}/healthz within "
                f"{timeout:g} s. It may be overloaded; if this persists, restart the service."
            ),
        )
    return verdict(record)


def _same_daemon(answer: dict[str, Any], status: dict[str, Any] | None) -> bool:
    # Another Keysmith on this port (ours failed to bind) must not speak for ours.
    if status is None or status.get("state") == STOPPED or not pid_alive(status.get("pid")):
        return True
    return answer.get("pid") == status.get("pid")


def ask_healthz(host: str, port: int, timeout: float) -> dict[str, Any] | None:
    """The daemon's own view from `/healthz`, or None when Keysmith does not answer."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/healthz", headers={"Accept": "application/json"})
        response = conn.getresponse()
        body = json.loads(response.read(1_000_000))
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        conn.close()
    # Something else may hold the port (the "port already taken" case): only trust Keysmith.
    if not isinstance(body, dict) or body.get("service") != "keysmith" or "state" not in body:
        return None
    return body


def verdict(record: dict[str, Any]) -> tuple[int, str, str]:
    state = record.get("state")
    if state == SERVING and record.get("degraded"):
        # Serving, but every write is refused: StartOS shows it as a failure with the cause and
        # the fix, rather than "ready" while no license can be issued.
        return EXIT_FAILURE, "", degraded_message(record["degraded"])
    if state == SERVING:
        return EXIT_READY, _ready_line(record), ""
    if state == STARTING:
        return EXIT_STARTING, "", "Keysmith is starting."
    if state == MIGRATING:
        return EXIT_LOADING, "", _progress_line(record)
    if state in (BLOCKED, FAILED):
        return EXIT_FAILURE, "", safe_mode_message(record)
    return EXIT_FAILURE, "", _not_running(record)


def _ready_line(record: dict[str, Any]) -> str:
    everything = record.get("heals") or []
    reverts = [h for h in everything if h.get("action") == "revert"]
    heals = len(everything) - len(reverts)
    parts = [f"ready, schema v{record.get('schema_version')}"]
    if reverts:
        parts.append(_reverted_line(reverts))
    if heals:
        parts.append(f"{heals} self-heal{'s' if heals != 1 else ''} at this boot")
    if record.get("previous_unclean"):
        parts.append("the previous run did not stop cleanly")
    return ", ".join(parts)


def _reverted_line(reverts: list[dict[str, Any]]) -> str:
    """A downgrade this boot carried out with the down texts kept with the data: each step,
    what it discarded (its evidence names it), and where the backup taken first is."""
    steps = "; ".join(f"{h['version']} {h['evidence']}" for h in reverts)
    return (
        f"migrations newer than this version were reverted at this boot ({steps}); the backup "
        f"taken before the revert is {reverts[0].get('backup_path')}"
    )


def _progress_line(record: dict[str, Any]) -> str:
    progress = record.get("progress") or {}
    if not progress:
        return "Upgrading the database: checking migrations. Do not stop the service."
    if progress.get("action") == "backup":
        return (
            f"Upgrading the database: taking a backup before the {progress.get('total')} "
            "migration steps. Do not stop the service."
        )
    verb = {
        "apply": "applying migration",
        "restamp": "re-stamping migration",
        "rerun": "re-running migration",
    }.get(progress.get("action"), "migrating")
    return (
        f"Upgrading the database: {verb} {progress.get('version')} "
        f"({progress.get('description')}), step {progress.get('index')} of "
        f"{progress.get('total')}. Do not stop the service."
    )


def safe_mode_message(record: dict[str, Any]) -> str:
    """The operator's explanation of a blocked or failed boot: what, data safety, what to do."""
    cause = record.get("cause") or {}
    blockers = cause.get("blockers") or []
    if blockers:  # the migrator's message repeats every finding; list them once instead
        count = f"{len(blockers)} migration{'s' if len(blockers) != 1 else ''}"
        lines = [
            f"Keysmith is in safe mode (blocked): the database upgrade was refused "
            f"before anything was changed, because of {count}:"
        ]
    else:
        lines = [f"Keysmith is in safe mode ({record.get('state')}): {cause.get('message')}"]
    for blocker in blockers:
        finding = str(blocker.get("finding")).rstrip(".")
        lines.append(
            f"- migration {blocker.get('version')} ({blocker.get('description')}): "
            f"{finding}. To fix: {blocker.get('remedy')}."
        )
    if cause.get("data_intact") is True:
        lines.append("Your data is intact: nothing in the database was changed by this failure.")
    elif cause.get("data_intact") is False:
        lines.append("The database may be in a partial state: do not delete anything by hand.")
    if cause.get("remedy"):
        lines.append(f"What to do: {_remedy_once(cause['remedy'], blockers)}")
    if record.get("consecutive_failed_boots", 0) > 1:
        lines.append(
            f"{record['consecutive_failed_boots']} boots in a row have not reached serving."
        )
    return "\n".join(lines)


def _remedy_once(remedy: str, blockers: list[dict[str, Any]]) -> str:
    """The boot's remedy without the one fix a blocker line above already gave in full."""
    fixes = {str(b.get("remedy")).rstrip(".") for b in blockers if b.get("remedy")}
    if len(fixes) == 1:
        (fix,) = fixes
        if remedy.startswith(fix):
            rest = remedy[len(fix) :].lstrip(" .")
            return f"the fix above.{f' {rest}' if rest else ''}"
    return remedy


def degraded_message(degraded: dict[str, Any]) -> str:
    return (
        f"Keysmith is running, but database writes are refused: {degraded.get('message')}.\n"
        f"What to do: {degraded.get('remedy')}."
    )


def _not_running(record: dict[str, Any]) -> str:
    last = record.get("last_state") or record.get("state")
    cause = (record.get("cause") or {}).get("message")
    text = f"Keysmith is not running (its last recorded state was {last}"
    text += f": {cause})." if cause else ")."
    return text + " Read the service logs for the cause, then start the service again."
