"""The benchmark workload: N generated migrations, written in the format each tool reads.

Every tool gets the same SQL bytes per migration (a CREATE TABLE, an INSERT and a CREATE INDEX);
only the wrapping differs: sqlx files for Keysmith and the stdlib floor, `-- migrate:up` files for
dbmate, plain .sql files for yoyo, and a driver script of `.read` lines for the sqlite3 shell (bare,
or with sqlx's ledger row in each file's transaction: the durable work every migrator does).
The same converters also turn the project's own migrations folder into each tool's format.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

FORMATS = ("sqlx", "dbmate", "yoyo", "shell", "shell-ledger")
SHELL_FORMATS = ("shell", "shell-ledger")


def migration_sql(index: int) -> str:
    """The SQL of generated migration `index`: one table, one row, one index."""
    return (
        f"CREATE TABLE bench_t{index} (\n"
        "    id INTEGER PRIMARY KEY,\n"
        "    name TEXT NOT NULL,\n"
        "    amount INTEGER NOT NULL\n"
        ");\n"
        f"INSERT INTO bench_t{index} (name, amount) VALUES ('row {index}', {index});\n"
        f"CREATE INDEX bench_t{index}_name ON bench_t{index} (name);\n"
    )


def write_generated_sqlx(folder: Path, count: int) -> list[Path]:
    """Write `count` sqlx-format migrations (versions 1..count) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    width = max(4, len(str(count)))
    paths = []
    for index in range(1, count + 1):
        path = folder / f"{index:0{width}d}_create_bench_t{index}.sql"
        path.write_text(migration_sql(index), encoding="utf-8", newline="\n")
        paths.append(path)
    return paths


def sqlx_files(folder: Path) -> list[Path]:
    """The up/simple migrations of an sqlx folder, in version order (sqlx's naming rules)."""
    found = []
    for path in folder.iterdir():
        prefix, underscore, _ = path.name.partition("_")
        if not underscore or not path.is_file() or path.name.endswith(".down.sql"):
            continue
        if path.name.endswith(".sql"):
            found.append((int(prefix), path))
    return [path for _, path in sorted(found)]


def _description_stem(path: Path) -> str:
    name = path.name.partition("_")[2]
    for suffix in (".up.sql", ".sql"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def convert(sqlx_folder: Path, out: Path, fmt: str, *, limit: int | None = None) -> Path:
    """Write the first `limit` (default all) migrations of `sqlx_folder` in format `fmt`.

    Returns what the tool is pointed at: a folder for sqlx/dbmate/yoyo, a driver file for shell.
    """
    files = sqlx_files(sqlx_folder)[:limit]
    if fmt in SHELL_FORMATS:
        return write_shell_driver(files, out, ledger=fmt == "shell-ledger")
    out.mkdir(parents=True, exist_ok=True)
    for path in files:
        version = int(path.name.partition("_")[0])
        if fmt == "sqlx":
            shutil.copyfile(path, out / path.name)
        elif fmt == "dbmate":
            # dbmate wants a numeric version prefix and both blocks; the down block stays empty.
            body = path.read_text(encoding="utf-8")
            text = f"-- migrate:up\n{body}\n-- migrate:down\n"
            (out / f"{version:06d}_{_description_stem(path)}.sql").write_text(text, newline="\n")
        elif fmt == "yoyo":
            # yoyo orders by file name and runs a plain .sql file in one transaction.
            shutil.copyfile(path, out / f"{version:06d}_{_description_stem(path)}.sql")
        else:
            raise ValueError(f"unknown workload format {fmt!r}; expected one of {FORMATS}")
    return out


def write_shell_driver(files: list[Path], driver: Path, *, ledger: bool = False) -> Path:
    """A sqlite3-shell script: WAL + synchronous=NORMAL, each file in its own BEGIN/COMMIT; with
    `ledger`, sqlx's ledger table and, in each file's transaction, the row sqlx inserts for it."""
    from daemon.migrate.ledger import LEDGER_DDL

    driver.parent.mkdir(parents=True, exist_ok=True)
    lines = ["PRAGMA journal_mode=WAL;", "PRAGMA synchronous=NORMAL;"]
    if ledger:
        lines.append(LEDGER_DDL)
    for path in files:
        lines += ["BEGIN;", f".read '{path.resolve()}'"]
        if ledger:
            lines.append(_ledger_row(path))
        lines.append("COMMIT;")
    driver.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return driver


def _ledger_row(path: Path) -> str:
    """sqlx's INSERT for one applied file (execution_time -1, as sqlx writes it before COMMIT)."""
    version = int(path.name.partition("_")[0])
    description = _description_stem(path).replace("_", " ").replace("'", "''")
    checksum = hashlib.sha384(path.read_bytes()).hexdigest()
    return (
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) "
        f"VALUES ({version}, '{description}', TRUE, X'{checksum}', -1);"
    )


@dataclass(frozen=True)
class Workload:
    """One workload in every format: `full` applies everything, `minus_last` all but the last.

    `last_only` is the shell floors' one-pending input (the shell reads no ledger).
    """

    root: Path
    count: int
    sqlx: Path

    def source(self, fmt: str, state: str) -> Path:
        """The folder (or shell driver) for `fmt` in `state` ('full', 'minus_last', 'last_only')."""
        return self.root / fmt / (f"{state}.sql" if fmt in SHELL_FORMATS else state)


def build(root: Path, sqlx_folder: Path) -> Workload:
    """Write `sqlx_folder`'s migrations in every format under `root`."""
    files = sqlx_files(sqlx_folder)
    if len(files) < 2:
        raise ValueError(f"{sqlx_folder} holds {len(files)} migrations; a workload needs 2 or more")
    workload = Workload(root=root, count=len(files), sqlx=sqlx_folder)
    for fmt in FORMATS:
        convert(sqlx_folder, workload.source(fmt, "full"), fmt)
        convert(sqlx_folder, workload.source(fmt, "minus_last"), fmt, limit=len(files) - 1)
    for fmt in SHELL_FORMATS:
        write_shell_driver(files[-1:], workload.source(fmt, "last_only"), ledger=fmt != "shell")
    return workload


def build_generated(root: Path, count: int) -> Workload:
    """Generate `count` migrations and write them in every format under `root`."""
    sqlx_folder = root / "generated"
    write_generated_sqlx(sqlx_folder, count)
    return build(root, sqlx_folder)
