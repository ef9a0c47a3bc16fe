"""The migration tools under test, how to call each one, and where the peers are installed.

Keysmith and the stdlib floor run on the project's interpreter binary (`sys.executable`), never a
PATH shim. dbmate's Go binary is called directly, not through its node wrapper. yoyo lives in its
own virtualenv so it never touches the project's. Peers are installed on first use into a cache
folder outside the repository (KEYSMITH_BENCH_TOOLS, default /var/tmp/keysmith-bench-tools).
"""

from __future__ import annotations

import os
import platform
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness import BenchError

REPO = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
TOOLS_DIR = Path(os.environ.get("KEYSMITH_BENCH_TOOLS", "/var/tmp/keysmith-bench-tools"))
DBMATE_VERSION = "2.36.0"
YOYO_VERSION = "9.0.0"
SHELL_PRAGMAS = "WAL, synchronous=NORMAL"


@dataclass(frozen=True)
class Tool:
    name: str
    fmt: str  # the workload format it reads (see workload.FORMATS)
    argv: Callable[[Path, Path], list[str]]  # (database, migrations source) -> command
    cwd: Path
    has_noop: bool = True  # the sqlite3 shell keeps no ledger, so it has no no-op run
    note: str = ""


def keysmith() -> Tool:
    def argv(db: Path, source: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "daemon",
            "migrate",
            "run",
            "--db",
            str(db),
            "--migrations",
            str(source),
        ]

    return Tool("keysmith", "sqlx", argv, REPO)


def sqlite_shell() -> Tool:
    binary = shutil.which("sqlite3")
    if binary is None:
        raise BenchError("the sqlite3 shell is not installed (Debian package sqlite3)")

    def argv(db: Path, driver: Path) -> list[str]:
        return [binary, "-bail", "-batch", str(db), f".read '{driver}'"]

    return Tool(
        "sqlite3 shell",
        "shell",
        argv,
        BENCH,
        has_noop=False,
        note=f"floor: each file in BEGIN/COMMIT, {SHELL_PRAGMAS}, no ledger",
    )


def sqlite_shell_ledger() -> Tool:
    """The shell doing the durable work of a migrator: each file and sqlx's ledger row for it in
    one transaction. The bare shell writes no ledger, so it is not like for like on its own."""
    shell = sqlite_shell()
    return Tool(
        "sqlite3 shell + ledger",
        "shell-ledger",
        shell.argv,
        BENCH,
        has_noop=False,
        note=f"floor: each file and its sqlx ledger row in BEGIN/COMMIT, {SHELL_PRAGMAS}",
    )


def stdlib_floor() -> Tool:
    script = BENCH / "floor_stdlib.py"

    def argv(db: Path, source: Path) -> list[str]:
        return [sys.executable, str(script), str(db), str(source)]

    return Tool(
        "stdlib floor",
        "sqlx",
        argv,
        BENCH,
        note=f"floor_stdlib.py: per-file transaction + ledger row, {SHELL_PRAGMAS}",
    )


def dbmate() -> Tool:
    binary = ensure_dbmate()

    def argv(db: Path, source: Path) -> list[str]:
        url = f"sqlite:{db}?_journal_mode=WAL&_synchronous=NORMAL"
        return [
            str(binary),
            "--url",
            url,
            "--migrations-dir",
            str(source),
            "--no-dump-schema",
            "migrate",
        ]

    return Tool(
        "dbmate",
        "dbmate",
        argv,
        BENCH,
        note=f"Go binary {DBMATE_VERSION}, called directly; {SHELL_PRAGMAS} via the URL",
    )


def yoyo() -> Tool:
    binary = ensure_yoyo()

    def argv(db: Path, source: Path) -> list[str]:
        return [
            str(binary),
            "apply",
            "--batch",
            "--no-config-file",
            "--database",
            f"sqlite:///{db}",
            str(source),
        ]

    return Tool(
        "yoyo",
        "yoyo",
        argv,
        BENCH,
        note=f"yoyo-migrations {YOYO_VERSION}; WAL, but synchronous=FULL (yoyo has no "
        "setting for it)",
    )


def _install(argv: list[str], what: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchError(f"could not install {what} into {TOOLS_DIR}: {done.stderr[-2000:]}")


def ensure_dbmate() -> Path:
    """The dbmate Go binary from the npm package, installed into the cache folder if missing."""
    arch = {"x86_64": "x64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    prefix = TOOLS_DIR / "dbmate"
    binary = prefix / "node_modules" / "@dbmate" / f"linux-{arch}" / "bin" / "dbmate"
    if not binary.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise BenchError("npm is needed to install dbmate (Debian package npm)")
        prefix.mkdir(parents=True, exist_ok=True)
        (prefix / "package.json").write_text('{"private": true}\n')
        _install(
            [
                npm,
                "install",
                "--prefix",
                str(prefix),
                "--no-audit",
                "--no-fund",
                f"dbmate@{DBMATE_VERSION}",
            ],
            "dbmate",
        )
    return binary


def ensure_yoyo() -> Path:
    """yoyo in a virtualenv of its own inside the cache folder, created if missing."""
    venv = TOOLS_DIR / "yoyo-venv"
    binary = venv / "bin" / "yoyo"
    if not binary.exists():
        _install([sys.executable, "-m", "venv", "--clear", str(venv)], "a virtualenv for yoyo")
        _install(
            [
                str(venv / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                f"yoyo-migrations=={YOYO_VERSION}",
            ],
            "yoyo-migrations",
        )
    return binary


def versions() -> dict[str, str]:
    """Version strings of every tool, for the machine section of the results."""
    found = {"python": sys.version.split()[0], "sqlite (python module)": sqlite3.sqlite_version}
    shell = shutil.which("sqlite3")
    if shell:
        found["sqlite3 shell"] = _first_line([shell, "--version"]).split(" ")[0]
    dbmate_bin = ensure_dbmate()
    found["dbmate"] = _first_line([str(dbmate_bin), "--version"]).removeprefix("dbmate version ")
    found["yoyo-migrations"] = YOYO_VERSION
    sys.path.insert(0, str(REPO))
    from daemon import __version__

    found["keysmith"] = __version__
    return found


def _first_line(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    return (done.stdout or done.stderr).strip().splitlines()[0] if done.returncode == 0 else "?"


def fresh_database(folder: Path) -> Path:
    """An empty database file in WAL mode in a new folder: the same start for every tool."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    db = folder / "bench.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    return db


def snapshot(db: Path, folder: Path) -> Path:
    """Copy a closed database (checkpointed first, so the main file holds everything)."""
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    copy = folder / db.name
    shutil.copyfile(db, copy)
    return copy
