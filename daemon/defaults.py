"""Where the database is unless the environment says otherwise (the migrations folder's default
is part of the schema policy, daemon/schema.py).

Shared by the daemon's settings and the migrate command line; kept to `os` alone because a
no-op `python -m daemon migrate run` must start in a few milliseconds.
"""

import os

DB_PATH_VARIABLE = "KEYSMITH_DB_PATH"
MIGRATIONS_DIR_VARIABLE = "KEYSMITH_MIGRATIONS_DIR"
DEFAULT_DB_PATH = os.path.join("data", "keysmith.db")
