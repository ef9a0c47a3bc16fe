"""startos/versions records, per package version, the schema its daemon knows (the highest
migration it ships): a downgrade reverts to the older version's number, so the current one
must be exactly this tree's highest migration, and no older one may be higher."""

from __future__ import annotations

import re
from pathlib import Path

from tests.kit import MIGRATIONS, latest_version

VERSIONS = Path(__file__).resolve().parent.parent / "startos" / "versions"


def schema_versions() -> dict[str, int]:
    text = (VERSIONS / "schema.ts").read_text()
    table = re.search(r"SCHEMA_VERSION = \{(.*?)\} as const", text, re.DOTALL)
    assert table, "startos/versions/schema.ts declares SCHEMA_VERSION"
    return {v: int(n) for v, n in re.findall(r"'([^']+)':\s*(\d+)", table.group(1))}


def current_version() -> str:
    index = (VERSIONS / "index.ts").read_text()
    name = re.search(r"current:\s*(\w+)", index).group(1)
    for path in VERSIONS.glob("v*.ts"):
        found = re.search(
            rf"export const {name} = VersionInfo\.of\(\{{\s*version: '([^']+)'", path.read_text()
        )
        if found:
            return found.group(1)
    raise AssertionError(f"no VersionInfo named {name} in startos/versions")


def test_the_current_version_knows_exactly_the_highest_migration():
    numbers = schema_versions()
    current = current_version()
    assert current in numbers, f"SCHEMA_VERSION has no entry for the current version {current}"
    assert numbers[current] == latest_version(MIGRATIONS), (
        "a new migration needs the current package version's SCHEMA_VERSION updated"
    )


def test_no_older_version_knows_a_newer_schema():
    numbers = schema_versions()
    current = numbers[current_version()]
    assert all(n <= current for n in numbers.values()), numbers


def test_every_down_migration_names_a_recorded_version():
    for path in VERSIONS.glob("v*.ts"):
        for older in re.findall(r"revertSchemaTo\('([^']+)'\)", path.read_text()):
            assert older in schema_versions(), f"{path.name}: {older} has no SCHEMA_VERSION"


def test_the_current_version_is_the_daemons_release():
    # ExVer upstream:downstream; the upstream part is the daemon's own version, as the 0.3.5
    # manifest's emver is (tests/test_manifest.py).
    from daemon import __version__

    upstream, _, downstream = current_version().partition(":")
    assert upstream == __version__ and downstream.isdigit(), current_version()
