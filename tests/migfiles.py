"""Small helpers for tests that need a migrations folder of their own."""

from __future__ import annotations

from pathlib import Path


def write(folder: Path, files: dict[str, str | bytes]) -> Path:
    """Create `folder` holding the given files (text is written as UTF-8, bytes as they are)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        data = content.encode("utf-8") if isinstance(content, str) else content
        (folder / name).write_bytes(data)
    return folder


# A small additive history: the kind of migrations the original incident was about.
BASIC = {
    "0001_create_accounts.sql": (
        "CREATE TABLE accounts (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE);\n"
        "INSERT INTO accounts (email) VALUES ('first@example.com');\n"
    ),
    "0002_accounts_add_plan.sql": (
        "-- Every account gets a plan; existing ones start on 'free'.\n"
        "ALTER TABLE accounts ADD COLUMN plan TEXT NOT NULL DEFAULT 'free';\n"
    ),
    "0003_create_invoices.sql": (
        "CREATE TABLE invoices (\n"
        "    id INTEGER PRIMARY KEY,\n"
        "    account_id INTEGER NOT NULL REFERENCES accounts(id),\n"
        "    memo TEXT NOT NULL DEFAULT 'thanks;  see you'\n"
        ");\n"
    ),
}
