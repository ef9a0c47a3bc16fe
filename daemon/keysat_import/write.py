"""Writing an imported shop into Keysmith's database: one transaction, or nothing.

The database is migrated first, exactly as the daemon does at start, then held exclusively
(the users lock) so that no daemon serves from it while the shop arrives. Foreign keys are
checked at the end of the transaction, so a Keysat row that points at nothing is named, not
half-written.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from daemon import __version__, schema
from daemon.keysat_import.errors import Refused
from daemon.keysat_import.shop import Shop
from daemon.licensing import store
from daemon.migrate import MigrateError, run_migrations
from daemon.migrate.apply import open_for_migration
from daemon.migrate.errors import DatabaseInUse
from daemon.migrate.lock import UsersLock

# Parents before children (the foreign keys are checked at COMMIT, but the order keeps the
# inserts readable and the ids stable).
ORDER = (
    "products",
    "policies",
    "licenses",
    "machines",
    "invoices",
    "discount_codes",
    "discount_code_terms",
    "discount_redemptions",
    "settings",
    "audit_log",
)


def migrate(db_path: Path, migrations_dir: Path) -> None:
    """Bring Keysmith's database to this release's schema, as `serve` would."""
    try:
        run_migrations(
            db_path,
            migrations_dir,
            idempotent=schema.IDEMPOTENT_MIGRATIONS,
            daemon_version=__version__,
        )
    except MigrateError as e:
        raise Refused(f"Keysmith's database could not be migrated first: {e}") from None


def write(db_path: Path, shop: Shop, note: dict[str, Any], now: int) -> int:
    """Write the shop in one transaction; the new issuer key's id. Raises Refused."""
    users = UsersLock(db_path)
    try:
        users.take_exclusive("import a Keysat shop")
    except DatabaseInUse:
        raise Refused(
            f"Keysmith's database {db_path} is open in another process (is the daemon "
            "running?); stop the service, then import"
        ) from None
    conn = open_for_migration(db_path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            key_id = _write_all(conn, shop, note, now)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    finally:
        conn.close()
        users.release()
    return key_id


def _write_all(conn: sqlite3.Connection, shop: Shop, note: dict[str, Any], now: int) -> int:
    _refuse_a_shop_in_use(conn)
    conn.execute("PRAGMA defer_foreign_keys = ON")  # checked below, with names
    # The issuer key as POST /v1/admin/import-issuer-key takes it: the old one kept, retired.
    conn.execute(store.RETIRE_ISSUER_KEY, (now,))
    key_id = conn.execute(
        store.INSERT_ISSUER_KEY, (shop.issuer.private_bytes(), shop.issuer.public_bytes(), now)
    ).lastrowid
    for row in shop.tables["licenses"]:
        row["issuer_key_id"] = key_id
    for table in ORDER:
        _insert(conn, table, shop.tables[table])
    _check_references(conn)
    detail = {**note, "public_key_pem": shop.issuer.public_pem(), "left_behind": shop.left_behind}
    _insert(conn, "audit_log", [_audit_row(f"issuer_key:{key_id}", detail, now)])
    return int(key_id)


def _refuse_a_shop_in_use(conn: sqlite3.Connection) -> None:
    (licenses,) = conn.execute("SELECT count(*) FROM licenses").fetchone()
    if licenses:
        raise Refused(
            f"this Keysmith shop already issued {licenses} license(s); importing Keysat's "
            "issuer key would make every one of them invalid. The import moves a whole shop "
            "into a Keysmith that has issued none"
        )
    (products,) = conn.execute("SELECT count(*) FROM products").fetchone()
    if products:
        raise Refused(
            f"this Keysmith shop already has {products} product(s); the import moves a whole "
            "shop into an empty Keysmith (delete them first, or import into a new install)"
        )


def _insert(conn: sqlite3.Connection, table: str, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        names = ", ".join(row)
        marks = ", ".join(f":{name}" for name in row)
        try:
            conn.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", row)
        except sqlite3.IntegrityError as e:
            which = row.get("id", row.get("code_id", row.get("key")))
            raise Refused(f"the Keysat row {which} does not fit Keysmith's {table}: {e}") from None


def _check_references(conn: sqlite3.Connection) -> None:
    broken = conn.execute("PRAGMA foreign_key_check").fetchall()
    if broken:
        table, rowid, parent, _ = broken[0]
        (row_id,) = conn.execute(f"SELECT id FROM {table} WHERE rowid = ?", (rowid,)).fetchone()
        raise Refused(
            f"{len(broken)} Keysat row(s) point at rows that do not exist, first the {table} "
            f"row {row_id}, which names a missing {parent} row"
        )


def _audit_row(subject: str, detail: dict[str, Any], now: int) -> dict[str, Any]:
    return {
        "created_at": now,
        "actor": "admin",
        "action": "keysat.import",
        "subject": subject,
        "detail": json.dumps(detail, sort_keys=True),
    }
