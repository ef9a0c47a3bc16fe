"""Discover migration files exactly as sqlx does (sqlx-core `migrate::source::resolve_blocking`).

A file is a migration when its name has a `_` and the part after the first `_` ends with `.sql`;
anything else (README.md, .gitkeep, x.sql~) is skipped silently, and subfolders are not read. The
prefix must be a signed 64-bit integer. The checksum is SHA-384 of the file's exact bytes.
"""

from __future__ import annotations

import hashlib
import os
from collections import namedtuple

from daemon.migrate.errors import SourceError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from os import PathLike

NO_TRANSACTION_MARKER = b"-- no-transaction"
# A down file declares in its header what reverting throws away for good (rows or values the
# older schema has no place for), one `-- discards: <what>` line per kind; the revert shows it
# before acting and records it in the heal log. `-- discards: nothing` says so explicitly.
DISCARDS_KEY = "discards"
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


# Value types in the no-op path are namedtuples, not dataclasses: importing dataclasses costs a
# no-op `migrate run` more than all of its real work.
class Migration(namedtuple("Migration", "version description path sql_bytes checksum")):
    """One up/simple migration file: version (int), description (str), path (str), its exact
    bytes and their SHA-384."""

    __slots__ = ()

    @property
    def text(self) -> str:
        return self.sql_bytes.decode("utf-8")

    @property
    def no_transaction(self) -> bool:
        # sqlx honours the marker only as the very first bytes (a BOM or blank line defeats it).
        return self.sql_bytes.startswith(NO_TRANSACTION_MARKER)

    @property
    def discards(self) -> tuple[str, ...]:
        """What the file's header declares it discards: the `-- discards:` lines among the
        comment lines before its first statement (none when it declares nothing)."""
        declared = []
        for line in self.text.splitlines():
            line = line.strip()
            if line and not line.startswith("--"):
                break  # the header ends at the first statement
            key, colon, what = line.removeprefix("--").strip().partition(":")
            if key == DISCARDS_KEY and colon and what.strip():
                declared.append(what.strip())
        return tuple(declared)


def has_down_file(migration: Migration) -> bool:
    """Whether a down file sits beside this up file, named as sqlx pairs them (a stat, no
    read: the no-op run asks it only of versions whose down text is not kept yet)."""
    name = migration.path
    return name.endswith(".up.sql") and os.path.exists(name.removesuffix(".up.sql") + ".down.sql")


def load_source(directory: str | PathLike[str]) -> list[Migration]:
    """Every up/simple migration in `directory`, ascending by version. Down files are skipped
    unread, so a run never depends on them."""
    by_version = _scan(directory, downs=False)
    return [by_version[v] for v in sorted(by_version)]


def load_downs(directory: str | PathLike[str]) -> dict[int, Migration]:
    """The down files by version: sqlx pairs `NNNN_name.up.sql` with `NNNN_name.down.sql`; a
    plain `NNNN_name.sql` has none and is irreversible."""
    return _scan(directory, downs=True)


def _scan(directory: str | PathLike[str], *, downs: bool) -> dict[int, Migration]:
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError as exc:
        raise SourceError(str(directory), f"cannot list the folder ({exc.strerror})") from None
    by_version: dict[int, Migration] = {}
    for entry in entries:
        if not _is_migration_name(entry.name) or not _is_regular_file(entry):
            continue
        version, description, is_down = _parse_name(entry.name)
        if is_down is not downs:
            continue
        migration = _read(entry.path, version, description)
        if version in by_version:
            other = os.path.basename(by_version[version].path)
            raise SourceError(entry.path, f"duplicate version {version}: also used by {other}")
        by_version[version] = migration
    return by_version


def _is_migration_name(name: str) -> bool:
    _prefix, sep, rest = name.partition("_")
    return bool(sep) and rest.endswith(".sql")


def _parse_name(name: str) -> tuple[int, str, bool]:
    prefix, _sep, rest = name.partition("_")
    digits = prefix[1:] if prefix[:1] in ("+", "-") else prefix
    version = int(prefix) if digits.isascii() and digits.isdigit() else None
    if version is None or not _I64_MIN <= version <= _I64_MAX:
        raise SourceError(
            name, f'error parsing migration filename "{name}"; expected integer version prefix'
        )
    if rest.endswith(".up.sql"):
        suffix, is_down = ".up.sql", False
    elif rest.endswith(".down.sql"):
        suffix, is_down = ".down.sql", True
    else:
        suffix, is_down = ".sql", False
    stem = rest
    while stem.endswith(suffix):  # sqlx uses trim_end_matches: repeated suffixes all go
        stem = stem[: -len(suffix)]
    return version, stem.replace("_", " "), is_down


def _is_regular_file(entry: os.DirEntry) -> bool:
    """Regular files and links to them count; a dangling or looping link is an error."""
    try:
        if entry.is_file():
            return True
        if entry.is_symlink() and not entry.is_dir():
            os.stat(entry.path)  # raises for a dangling or looping link
    except OSError as exc:
        raise SourceError(entry.path, f"the link cannot be followed ({exc.strerror})") from None
    return False


def _read(path: str, version: int, description: str) -> Migration:
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise SourceError(path, f"cannot read the file ({exc.strerror})") from None
    try:
        data.isascii() or data.decode("utf-8")  # isascii: the common case, without a copy
    except UnicodeDecodeError as exc:
        raise SourceError(
            path, f"not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None
    return Migration(version, description, path, data, hashlib.sha384(data).digest())
