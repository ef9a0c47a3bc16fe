"""A downgrade to Keysmith 0.1 (the StartOS 0.3.5-era release), prepared by the owner.

StartOS 0.4 converts a 0.3.5 package with `canMigrateFrom` = any, so installing 0.1.0 over this
version hands this version's uninit the data version itself as its target, and the schema
revert in the version graph's `down` never runs: 0.1.0 would find a schema it does not know
and refuse to open it. So the owner prepares the downgrade with an action while the service is
stopped: the schema goes back to what 0.1.0 knows (through the migrator's revert, which backs
up first), and a marker beside the database holds this version in safe mode, so starting it
again before installing 0.1.0 cannot quietly upgrade the schema and undo the preparation.

The hold ends when the owner cancels it (an action), or by itself once another version of the
daemon has run on this volume since (0.1.0 was installed, then this version again: an upgrade).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from daemon.status import Cause, utc_now, write_atomic

log = logging.getLogger("keysmith.downgrade")

# Keysmith 0.1.0 ships migrations 0001 to 0011. startos/versions/schema.ts records the same
# number for the version graph's own `down`; tests/test_startos_downgrade.py checks they agree.
OLDER_RELEASE = "0.1.0"
OLDER_SCHEMA = 11

MARKER_NAME = "keysmith-downgrade-prepared.json"
PREPARE_NAME = "Prepare a downgrade to Keysmith 0.1"
CANCEL_NAME = "Cancel the downgrade to Keysmith 0.1"


def marker_path(db_path: Path) -> Path:
    return db_path.parent / MARKER_NAME


def read_marker(db_path: Path) -> dict[str, Any] | None:
    """The preparation recorded beside the database, or None. An unreadable marker still
    holds: the owner decided to go back, and a damaged file must not quietly upgrade."""
    path = marker_path(db_path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        record = None
    return record if isinstance(record, dict) else {"unreadable": str(path)}


def write_marker(db_path: Path, record: dict[str, Any]) -> None:
    write_atomic(marker_path(db_path), (json.dumps(record, indent=1) + "\n").encode())


def remove_marker(db_path: Path) -> bool:
    try:
        os.unlink(marker_path(db_path))
    except FileNotFoundError:
        return False
    return True


def release_if_superseded(db_path: Path, previous: dict[str, Any] | None, version: str) -> None:
    """Drop a marker that another daemon version has run past: the previous boot recorded in
    the status file was of another version and began after the preparation, so the older
    release was installed and this start is an upgrade from it."""
    marker = read_marker(db_path)
    if marker is None or previous is None:
        return
    other = previous.get("daemon_version")
    started = str(previous.get("boot_started_at") or "")
    if other and other != version and started > str(marker.get("prepared_at") or ""):
        remove_marker(db_path)
        log.info(
            "downgrade preparation ended: another version ran on this database since",
            extra={"version_since": other, "prepared_at": marker.get("prepared_at")},
        )


def hold_cause(db_path: Path) -> Cause | None:
    """Why this boot must not open the database, when a downgrade is prepared."""
    marker = read_marker(db_path)
    if marker is None:
        return None
    backup = marker.get("backup")
    return Cause(
        kind="downgrade_prepared",
        message=(
            f"prepared for a downgrade to Keysmith {OLDER_RELEASE}: the database schema was "
            f"reverted to v{marker.get('schema', OLDER_SCHEMA)}"
            + (f" (backup taken first: {backup})" if backup else "")
            + ", and this version does not open it, so that the downgrade stays possible. "
            "Every license, product, policy and machine is kept."
        ),
        remedy=(
            f"install Keysmith {OLDER_RELEASE} now (sideload its package; StartOS replaces this "
            f"version and keeps the data). To stay on this version instead, stop the service, "
            f"run the action '{CANCEL_NAME}', then start it: the database is upgraded again."
        ),
        data_intact=True,
    )


def prepared_record(schema: int, backup: str | None, reverted: list[int]) -> dict[str, Any]:
    return {
        "release": OLDER_RELEASE,
        "schema": schema,
        "prepared_at": utc_now(),
        "backup": backup,
        "reverted": reverted,
    }
