"""The action that moves a Keysat shop here (daemon/keysat_import). StartOS has no file input
for actions, so the seller copies Keysat's `keysat.db` into this service's data volume and
names it here, relative to the volume (the action runs with it mounted at the data folder)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from daemon.actions.registry import Action, ActionError, text
from daemon.actions.results import Result, Value
from daemon.settings import Settings

DEFAULT_FILE = "keysat-import/keysat.db"


def import_keysat_action(settings: Settings, values: dict[str, Any]) -> Result:
    from daemon.keysat_import import NOTHING_WRITTEN, Refused, import_keysat

    path = _inside_data(settings.data_dir, values["file"] or DEFAULT_FILE)
    try:
        imported = import_keysat(path, settings)
    except Refused as e:
        raise ActionError(f"Import refused: {e}. {NOTHING_WRITTEN}") from None
    return Result(
        "Keysat shop imported",
        f"{imported.headline()}. Every key a buyer holds validates here as it did on Keysat. "
        "Start the service; then connect your payment provider and create API keys and webhooks "
        f"anew. You may delete {path.name} from the data volume.",
        Value("\n".join(imported.lines()[1:]), copyable=True),
    )


def _inside_data(data_dir: Path, name: str) -> Path:
    """The file, which must lie inside the data volume (the only place a seller can put it)."""
    path = (data_dir / name).resolve()
    if not path.is_relative_to(data_dir.resolve()):
        raise ActionError(
            f"'file' must name a file inside the data volume, got {name!r}. Nothing was changed."
        )
    return path


ACTIONS = (
    Action(
        "import-keysat",
        "Import a Keysat shop",
        "Moves a Keysat shop into this Keysmith: its issuer key (so every key buyers hold "
        "keeps working), products, tiers, licenses, machines, discount codes, sales history "
        "and audit log. Copy Keysat's keysat.db into this service's data volume first (see the "
        "instructions). Refused, with nothing changed, once this Keysmith has issued a license.",
        import_keysat_action,
        warning="This Keysmith's own issuer key is retired: use this on a new install that "
        "has sold nothing. Stop Keysat first and keep it stopped, so a key is never valid in "
        "two shops.",
        allowed_statuses="only-stopped",
        group="Database",
        input=(
            text(
                "file",
                "Keysat database",
                "The path of Keysat's keysat.db inside this service's data volume.",
                placeholder=DEFAULT_FILE,
            ),
        ),
    ),
)
