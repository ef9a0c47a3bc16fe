"""Moving a Keysat shop to Keysmith: `python -m daemon import-keysat PATH`, and the StartOS
action `import-keysat`.

Keysat and Keysmith share the LIC1 key format and Ed25519, so bringing Keysat's issuer key
along keeps every key a buyer holds valid. The import reads the Keysat database read-only
(source.py: only a ledger and columns it knows), maps each table to Keysmith's (shop.py), and
writes it all in one transaction into a Keysmith that has issued no license (write.py). Every
refusal comes before the transaction commits: the Keysmith database is left as it was.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from daemon.keysat_import import shop as shops
from daemon.keysat_import import source, write
from daemon.keysat_import.errors import Refused
from daemon.settings import Settings, SettingsError

EXIT_OK, EXIT_ERROR, EXIT_REFUSED = 0, 1, 2
NOTHING_WRITTEN = "Nothing was written to Keysmith's database."


@dataclass(frozen=True)
class Imported:
    keysat_version: int
    counts: dict[str, int]
    left_behind: dict[str, int]
    public_key_pem: str

    def headline(self) -> str:
        return f"Imported a Keysat shop (Keysat schema {self.keysat_version})"

    def lines(self) -> list[str]:
        shown = ("products", "policies", "licenses", "machines", "invoices", "discount_codes")
        shown += ("discount_redemptions", "audit_log")
        lines = [f"{self.headline()}:"]
        lines += [f"  {table}: {self.counts[table]}" for table in shown]
        lines += ["Left behind or changed on the way:"]
        lines += [f"  {what}: {n}" for what, n in sorted(self.left_behind.items())] or ["  none"]
        lines.append("Every license is signed by this issuer key, now Keysmith's:")
        lines.append(self.public_key_pem.rstrip())
        return lines


def import_keysat(path: Path, settings: Settings) -> Imported:
    """Import the Keysat database at `path` into the settings' Keysmith database, or raise
    Refused (with nothing written to it)."""
    version, rows = source.read(path)
    shop = shops.build(rows)
    write.migrate(settings.db_path, settings.migrations_dir)
    counts = {table: len(shop_rows) for table, shop_rows in shop.tables.items()}
    note = {"source": path.name, "keysat_version": version, "counts": counts}
    write.write(settings.db_path, shop, note, int(time.time()))
    return Imported(version, counts, shop.left_behind, shop.issuer.public_pem())


def import_main(path: str) -> int:
    """The CLI: the summary on stdout (exit 0), or why not on stderr (exit 2 refused, 1
    failed)."""
    settings, errors = Settings.lenient()
    try:
        if errors:
            raise errors[0]
        imported = import_keysat(Path(path), settings)
    except (Refused, SettingsError) as e:
        print(f"Import refused: {e}. {NOTHING_WRITTEN}", file=sys.stderr)
        return EXIT_REFUSED
    except (OSError, sqlite3.Error) as e:
        print(
            f"Import failed: {type(e).__name__}: {e}. The import is one transaction, rolled "
            f"back on failure: {NOTHING_WRITTEN} Fix the cause (disk space, file permissions), "
            "then run it again.",
            file=sys.stderr,
        )
        return EXIT_ERROR
    print("\n".join(imported.lines()))
    return EXIT_OK


__all__ = ["NOTHING_WRITTEN", "Imported", "Refused", "import_keysat", "import_main"]
