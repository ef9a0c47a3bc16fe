"""Where the database and the migrations are unless the environment says otherwise.

Shared by the daemon's settings and the migrate command line; kept to `os` alone because a
no-op `python -m daemon migrate run` must start in a few milliseconds.
"""

import os

DB_PATH_VARIABLE = "KEYSMITH_DB_PATH"
MIGRATIONS_DIR_VARIABLE = "KEYSMITH_MIGRATIONS_DIR"
DEFAULT_DB_PATH = os.path.join("data", "keysmith.db")
# The `migrations/` folder shipped beside the `daemon` package (repository checkout or image).
DEFAULT_MIGRATIONS_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "migrations"
)
