"""`history.lock`: every text each migration ever had in the project's history, beside the
migrations it describes, so a changed file can be explained when no provenance was kept (a
ledger written by sqlx, or by a migrator that kept no texts).

The format is JSON (a text field must hold whole SQL files):

    {"format": 1,
     "rule": "...",                      # which commits count as releases (see below)
     "migrations": {"9": [               # per version, oldest text first
        {"sha384": "<hex>",              # the checksum sqlx records for these bytes
         "tokens_sha384": "<hex>",       # sqltext.normalized_sha384: equal up to comments
         "release": "<commit> <date>",   # the first commit that held these bytes
         "text": "<the SQL>"},           # kept so a refusal can show the difference
        {"sha384": ..., "tokens_sha384": ..., "release": "current", "text": null}]}}

A release is every commit reachable from HEAD that touched the folder: the project tags no
releases, and any commit could have been built and deployed. Today's text of each version is
listed as "current" without its text (it is the file itself), which keeps the lock identical
before and after the commit that changes a migration. Down files are not listed: the ledger
never records them. The lock is generated from git (`make migrations-history`) and checked
against it by tests/test_migrate_history.py; a clone without history cannot produce it and
says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections import namedtuple
from pathlib import Path

from daemon.migrate.source import _is_migration_name, _parse_name, load_source
from daemon.migrate.sqltext import normalized_sha384

LOCK_NAME = "history.lock"
FORMAT = 1
CURRENT = "current"
RULE = (
    "every commit reachable from HEAD that touched the migrations folder; today's text of "
    "each version is 'current' (its text is the file itself)"
)

# One text a version had: its SHA-384 and token hash (bytes), the release that first held it,
# and the text (None for today's).
Released = namedtuple("Released", "sha384 tokens_sha384 release text")


def release_name(released: Released) -> str:
    """How a refusal or a heal names where a text came from."""
    if released.release == CURRENT:
        return "the text the history lock lists as current"
    return f"the text released in commit {released.release}"


class HistoryUnavailable(Exception):
    """The lock cannot be generated here (no git, no repository, or a shallow clone)."""


class History:
    """The released texts of each version, from a lock file."""

    def __init__(self, texts: dict[int, list[Released]]) -> None:
        self.texts = texts

    def find(self, version: int, checksum: bytes) -> Released | None:
        """The released text of `version` whose SHA-384 is `checksum`, if any."""
        return next((t for t in self.texts.get(version, ()) if t.sha384 == checksum), None)


def load_history(migrations_dir: str | os.PathLike[str]) -> History | None:
    """The lock beside the migrations, or None when the folder has none (it is optional)."""
    path = Path(migrations_dir) / LOCK_NAME
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        from daemon.migrate.errors import SourceError

        raise SourceError(str(path), f"not a readable history lock ({exc})") from None
    return History(
        {
            int(version): [
                Released(
                    bytes.fromhex(t["sha384"]),
                    bytes.fromhex(t["tokens_sha384"]),
                    t["release"],
                    t["text"],
                )
                for t in texts
            ]
            for version, texts in doc["migrations"].items()
        }
    )


# ---- generating it from git ----------------------------------------------------------------


def generate(migrations_dir: str | os.PathLike[str]) -> str:
    """The lock text for `migrations_dir`, from its repository's history and today's files."""
    folder = Path(migrations_dir).resolve()
    top = Path(_git(folder, "rev-parse", "--show-toplevel").strip())
    if _git(folder, "rev-parse", "--is-shallow-repository").strip() == "true":
        raise HistoryUnavailable(
            f"{top} is a shallow clone: the history lock needs every commit "
            "(`git fetch --unshallow`, or clone without --depth)"
        )
    relative = folder.relative_to(top).as_posix()
    today = {m.version: m.checksum for m in load_source(folder)}
    seen: dict[int, dict[bytes, Released]] = {}
    # Oldest first, so each text is named after the first commit that held it.
    for line in _git(top, "log", "--reverse", "--format=%H %cs", "--", relative).splitlines():
        commit, date = line.split()
        for name in _git(top, "ls-tree", "--name-only", commit, f"{relative}/").splitlines():
            base = name.rsplit("/", 1)[-1]
            if not _is_migration_name(base) or _parse_name(base)[2]:
                continue
            data = _git_bytes(top, "show", f"{commit}:{name}")
            version = _parse_name(base)[0]
            digest = hashlib.sha384(data).digest()
            texts = seen.setdefault(version, {})
            if digest not in texts and digest != today.get(version):
                text = data.decode("utf-8", "replace")
                texts[digest] = Released(
                    digest, normalized_sha384(text), f"{commit[:12]} {date}", text
                )
    for migration in load_source(folder):
        seen.setdefault(migration.version, {})[migration.checksum] = Released(
            migration.checksum, normalized_sha384(migration.text), CURRENT, None
        )
    doc = {
        "format": FORMAT,
        "rule": RULE,
        "migrations": {
            str(version): [
                {
                    "sha384": t.sha384.hex(),
                    "tokens_sha384": t.tokens_sha384.hex(),
                    "release": t.release,
                    "text": t.text,
                }
                for t in seen[version].values()
            ]
            for version in sorted(seen)
        },
    }
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


def _git(where: Path, *args: str) -> str:
    return _git_bytes(where, *args).decode("utf-8")


def _git_bytes(where: Path, *args: str) -> bytes:
    try:
        done = subprocess.run(["git", "-C", str(where), *args], capture_output=True, check=False)
    except FileNotFoundError:  # no git at all
        raise HistoryUnavailable("git is not installed (the lock is read from git)") from None
    if done.returncode != 0:
        problem = done.stderr.decode("utf-8", "replace").strip()
        raise HistoryUnavailable(f"git {' '.join(args[:2])} in {where} failed: {problem}")
    return done.stdout


def main(argv: list[str]) -> int:
    """`python -m daemon.migrate.history generate FOLDER`: write FOLDER/history.lock."""
    import sys

    if len(argv) != 2 or argv[0] != "generate":
        print("usage: python -m daemon.migrate.history generate FOLDER", file=sys.stderr)
        return 2
    try:
        fresh = generate(argv[1])
    except HistoryUnavailable as exc:
        print(f"cannot build the history lock: {exc}", file=sys.stderr)
        return 1
    (Path(argv[1]) / LOCK_NAME).write_text(fresh, encoding="utf-8")
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
