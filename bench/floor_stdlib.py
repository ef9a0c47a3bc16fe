"""Stdlib floor: the bare work of an sqlx-style migrator, nothing else. Usage: DB FOLDER."""

import hashlib
import sqlite3
import sys
from pathlib import Path

conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA journal_mode=WAL")
conn.execute("PRAGMA synchronous=NORMAL")
conn.execute(
    "CREATE TABLE IF NOT EXISTS _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT"
    " NOT NULL, installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT"
    " NULL, checksum BLOB NOT NULL, execution_time BIGINT NOT NULL)"
)
applied = dict(conn.execute("SELECT version, checksum FROM _sqlx_migrations"))
files = sorted((int(p.name.partition("_")[0]), p) for p in Path(sys.argv[2]).glob("*_*.sql"))
for version, path in files:
    data = path.read_bytes()
    checksum = hashlib.sha384(data).digest()
    if version in applied:
        if applied[version] != checksum:
            sys.exit(f"migration {version} was previously applied but has been modified")
        continue
    description = path.name.partition("_")[2].removesuffix(".sql").replace("_", " ")
    quoted = description.replace("'", "''")
    # executescript() commits first, so BEGIN/COMMIT live inside the one script with the ledger row.
    conn.executescript(
        f"BEGIN;\n{data.decode()}\n;INSERT INTO _sqlx_migrations (version, description, success,"
        f" checksum, execution_time) VALUES ({version}, '{quoted}', 1,"
        f" X'{checksum.hex()}', -1);\nCOMMIT;"
    )
