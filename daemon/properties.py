"""StartOS properties: `start9/stats.yaml` on the data volume, shown on the service's page.

Format (StartOS 0.3.5, `compat properties`): `{version: 2, data: {Label: {type: string, value,
description, copyable, qr, masked}}}`. JSON is valid YAML, so the file is written as JSON,
atomically like the status file. The admin key is included masked (StartOS hides it until the
operator reveals it); the file sits on the same volume as the database that holds it anyway.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from daemon.status import write_atomic

STATS_RELATIVE = Path("start9") / "stats.yaml"


@dataclass(frozen=True)
class Properties:
    version: str
    schema_version: int | None
    heals_at_boot: int
    heals_total: int | None  # from the migrator's heal log
    public_key: str | None  # the issuer public key (PEM) that sellers embed in their software
    admin_api_key: str | None


def _entry(
    value: str, description: str, *, copyable: bool = False, masked: bool = False
) -> dict[str, object]:
    return {
        "type": "string",
        "value": value,
        "description": description,
        "copyable": copyable,
        "qr": False,
        "masked": masked,
    }


def stats_document(props: Properties) -> dict[str, object]:
    heals = f"{props.heals_at_boot} at the last boot"
    if props.heals_total is not None:
        heals += f", {props.heals_total} in total"
    data: dict[str, object] = {
        "Version": _entry(props.version, "The Keysmith daemon version running now."),
        "Schema version": _entry(
            str(props.schema_version if props.schema_version is not None else "none"),
            "The highest database migration applied.",
        ),
        "Self-heals": _entry(
            heals,
            "Migrations whose recorded checksum drifted and were healed automatically "
            "(re-stamped with proof, or re-run after a backup). The logs have the details.",
        ),
    }
    if props.public_key:
        data["Issuer public key"] = _entry(
            props.public_key,
            "Embed this Ed25519 public key in your software to verify license keys offline.",
            copyable=True,
        )
    if props.admin_api_key:
        data["Admin API key"] = _entry(
            props.admin_api_key,
            "Bearer key for the /v1/admin/ endpoints. Keep it secret.",
            copyable=True,
            masked=True,
        )
    return {"version": 2, "data": data}


def write_properties(data_dir: Path, props: Properties) -> Path:
    """Write `start9/stats.yaml` under `data_dir`; returns its path."""
    path = data_dir / STATS_RELATIVE
    path.parent.mkdir(parents=True, exist_ok=True)
    # Owner-only: it holds the admin key.
    write_atomic(path, json.dumps(stats_document(props), indent=2).encode() + b"\n", mode=0o600)
    return path
