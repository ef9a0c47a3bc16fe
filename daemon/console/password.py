"""The console password: an argon2id hash in the database's `settings` table.

argon2id is memory-hard: each guess at a stolen hash costs 64 MiB and a few passes over it
(argon2-cffi's defaults, RFC 9106's second recommended set), so a database copy does not give
the password away cheaply. The password itself is never stored or logged.

Reads and writes use short stdlib connections, not the service's pool: the console reads the
hash in safe mode too (where the daemon keeps no pool and writes nothing), and the action that
sets it runs in its own process.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from urllib.parse import quote

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

SETTING = "console_password_argon2id"
BUSY_TIMEOUT_SECONDS = 5.0
_HASHER = PasswordHasher()


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify(stored_hash: str, password: str) -> bool:
    """Whether `password` matches; a malformed stored hash matches nothing."""
    try:
        return _HASHER.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def read_hash(db_path: Path) -> str | None:
    """The stored hash, or None when no password is set (or there is no database yet)."""
    if not db_path.exists():
        return None
    conn = sqlite3.connect(
        f"file:{quote(str(db_path))}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_SECONDS
    )
    try:
        row = conn.execute("SELECT value FROM settings WHERE key = ?", (SETTING,)).fetchone()
    except sqlite3.OperationalError as e:
        if "no such table" in str(e):  # a database the daemon has not set up yet
            return None
        raise
    finally:
        conn.close()
    return None if row is None else row[0]


def write_hash(db_path: Path, password_hash: str, *, actor: str) -> None:
    """Store a new hash and its audit row in one transaction."""
    now = int(time.time())
    conn = sqlite3.connect(db_path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (key) "
                "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                (SETTING, password_hash, now),
            )
            conn.execute(
                "INSERT INTO audit_log (created_at, actor, action, subject, detail) "
                "VALUES (?, ?, ?, ?, ?)",
                (now, actor, "console_password.set", f"setting:{SETTING}", json.dumps({})),
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    finally:
        conn.close()
