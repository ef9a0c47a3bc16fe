"""The benchmark scripts in bench/ run end to end and print their tables with ratios.

Short versions only (--quick: tiny workloads, two runs): these prove the scripts work on a fresh
machine, not how fast anything is, so nothing here asserts a time. What they do check is that a
figure is only printed for work that was really done, and that the floors do the same bookkeeping
as Keysmith, since a floor that skipped work would make every ratio a lie.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
sys.path.insert(0, str(BENCH))

import scenarios  # noqa: E402
import tools  # noqa: E402
import workload  # noqa: E402
from harness import BenchError  # noqa: E402

RATIO = re.compile(r"^\d+\.\d\dx$")


def _require_sqlite_shell() -> None:
    if shutil.which("sqlite3") is None:
        if os.environ.get("CI"):
            pytest.fail("the sqlite3 shell is missing in CI; tests/system-deps.sh installs it")
        pytest.skip("the sqlite3 shell is not installed (run: bash tests/system-deps.sh)")


def _run_bench(script: str, tmp_path: Path, *extra: str) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), "--quick", "--workdir", str(tmp_path / "w"), *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, f"{script} failed:\n{done.stderr[-3000:]}\n{done.stdout[-2000:]}"
    assert not (tmp_path / "w").exists(), "the scratch folder must be removed without --keep"
    return done.stdout


def _table_rows(text: str, *title_parts: str) -> dict[str, list[str]]:
    """The rows of the first markdown table under a bold title holding every one of title_parts."""
    lines = text.splitlines()
    start = next(
        i
        for i, line in enumerate(lines)
        if line.startswith("**") and all(part in line for part in title_parts)
    )
    rows = {}
    for line in lines[start + 4 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def _assert_ratios(rows: dict[str, list[str]], floor: str, missing: tuple[str, ...] = ()) -> None:
    for tool, cells in rows.items():
        if tool in missing:
            assert cells[0] == "n/a", f"{tool} should have no figure here"
            continue
        assert re.match(r"^[\d,.]+ \[[\d,.]+–[\d,.]+\]$", cells[0]), f"{tool} wall: {cells[0]}"
        assert RATIO.match(cells[4]) and RATIO.match(cells[5]), f"{tool} ratios: {cells}"
    assert rows["keysmith"][4] == "1.00x"
    assert rows[floor][5] == "1.00x"


@pytest.mark.timeout(300)
def test_bench_migrate_quick_prints_every_scenario_with_ratios_and_targets(tmp_path):
    _require_sqlite_shell()
    out = _run_bench("bench_migrate.py", tmp_path)
    for scenario, floor in (("apply all", "sqlite3 shell"), ("one pending", "sqlite3 shell")):
        rows = _table_rows(out, scenario)
        assert set(rows) == {"keysmith", "sqlite3 shell", "sqlite3 shell + ledger", "stdlib floor"}
        _assert_ratios(rows, floor)
    shells = ("sqlite3 shell", "sqlite3 shell + ledger")
    _assert_ratios(_table_rows(out, "no-op"), "stdlib floor", missing=shells)
    assert re.search(r"apply all, Keysmith / sqlite3 shell: \d+\.\d\dx \(target <= 1\.15x\)", out)
    assert re.search(
        r"apply all, Keysmith / sqlite3 shell \+ ledger \(like for like\): \d+\.\d\dx "
        r"\(target <= 1\.15x\)",
        out,
    )
    assert re.search(r"no-op, Keysmith / stdlib floor: \d+\.\d\dx \(target <= 1\.25x\)", out)


@pytest.mark.timeout(300)
def test_bench_peers_quick_prints_peers_heal_and_backup_tables(tmp_path):
    _require_sqlite_shell()
    results = tmp_path / "RESULTS.md"
    out = _run_bench("bench_peers.py", tmp_path, "--results", str(results))
    assert results.read_text() + "\n" == out
    everyone = {"keysmith", "dbmate", "yoyo", "sqlite3 shell", "stdlib floor"}
    for label in ("generated migrations", "project migrations"):
        for scenario in ("apply all", "one pending"):
            rows = _table_rows(out, f"**{scenario} — ", label)
            assert set(rows) == everyone
            _assert_ratios(rows, "sqlite3 shell")
        rows = _table_rows(out, "**no-op — ", label)
        _assert_ratios(rows, "stdlib floor", missing=("sqlite3 shell",))
    assert "## Realistic: the project's" in out
    assert re.search(r"apply all, Keysmith / dbmate: \d+\.\d\dx", out)
    heal = out[out.index("## Heal cost") :]
    heal_rows = [line for line in heal.splitlines() if re.match(r"^\| [\d,]+ MB \|", line)]
    assert len(heal_rows) == 2, heal  # --quick: two sizes
    for row in heal_rows:
        assert row.count("(2 runs)") == 2 and re.search(r"\| \d+\.\dx \|$", row), row
    assert "Keysmith pre-migration backup" in out and "`cp` (no fsync)" in out
    assert "- dbmate: 2." in out and "- yoyo-migrations: 9." in out


def test_a_tool_that_does_no_work_gets_no_figure(tmp_path):
    """A do-nothing 'tool' exits 0 fast; the bench must refuse to print a time for it."""
    load = workload.build_generated(tmp_path / "load", 3)
    lazy = tools.Tool("lazy", "sqlx", lambda db, source: [sys.executable, "-c", "pass"], REPO)
    with pytest.raises(BenchError, match="lazy left a different schema"):
        scenarios.run_scenarios(load, [lazy], 1, tmp_path / "runs", log=lambda _: None)


def test_a_failing_tool_reports_its_output(tmp_path):
    load = workload.build_generated(tmp_path / "load", 3)
    argv = [sys.executable, "-c", "import sys; sys.exit('no such table: bench_t9')"]
    broken = tools.Tool("broken", "sqlx", lambda db, source: argv, REPO)
    with pytest.raises(BenchError, match=r"broken failed .* exited 1:\n.*no such table: bench_t9"):
        scenarios.run_scenarios(load, [broken], 1, tmp_path / "runs", log=lambda _: None)


def test_every_tool_gets_the_same_sql(tmp_path):
    load = workload.build_generated(tmp_path / "load", 12)
    for index, path in enumerate(workload.sqlx_files(load.source("sqlx", "full")), start=1):
        assert path.read_text() == workload.migration_sql(index)
    dbmate_files = sorted(load.source("dbmate", "full").iterdir())
    yoyo_files = sorted(load.source("yoyo", "full").iterdir())
    assert len(dbmate_files) == len(yoyo_files) == 12
    for index, (dbmate_file, yoyo_file) in enumerate(
        zip(dbmate_files, yoyo_files, strict=True), start=1
    ):
        sql = workload.migration_sql(index)
        assert dbmate_file.read_text() == f"-- migrate:up\n{sql}\n-- migrate:down\n"
        assert yoyo_file.read_text() == sql
    assert len(sorted(load.source("yoyo", "minus_last").iterdir())) == 11
    driver = load.source("shell", "full").read_text().splitlines()
    assert driver[:2] == ["PRAGMA journal_mode=WAL;", "PRAGMA synchronous=NORMAL;"]
    assert driver.count("BEGIN;") == driver.count("COMMIT;") == 12
    assert load.source("shell", "last_only").read_text().count(".read") == 1


@pytest.mark.parametrize("floor", ["stdlib floor", "sqlite3 shell + ledger"])
def test_a_floor_with_a_ledger_writes_the_same_ledger_rows_as_keysmith(tmp_path, floor):
    """A floor is only a fair floor if it does the same bookkeeping: sqlx's ledger rows."""
    if floor == "sqlite3 shell + ledger":
        _require_sqlite_shell()
    load = workload.build_generated(tmp_path / "load", 5)
    ledgers = []
    chosen = tools.stdlib_floor() if floor == "stdlib floor" else tools.sqlite_shell_ledger()
    for tool in (chosen, tools.keysmith()):
        db = tools.fresh_database(tmp_path / tool.name.replace(" ", "-"))
        subprocess.run(
            tool.argv(db, load.source(tool.fmt, "full")),
            cwd=tool.cwd,
            check=True,
            capture_output=True,
        )
        conn = sqlite3.connect(db)
        ledgers.append(
            conn.execute(
                "SELECT version, description, success, checksum FROM _sqlx_migrations ORDER BY 1"
            ).fetchall()
        )
        conn.close()
    assert len(ledgers[0]) == 5
    assert ledgers[0] == ledgers[1]


def test_bench_validate_quick_prints_both_routes_and_the_ratios():
    if shutil.which("wrk") is None:
        if os.environ.get("CI"):
            pytest.fail("wrk is missing in CI; tests/system-deps.sh installs it")
        pytest.skip("wrk is not installed (run: bash tests/system-deps.sh)")
    done = subprocess.run(
        [sys.executable, str(BENCH / "bench_validate.py"), "--quick"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{done.stderr[-3000:]}\n{done.stdout[-2000:]}"
    lines = done.stdout.splitlines()
    for route in ("GET /healthz", "POST /v1/validate"):
        (row,) = [line for line in lines if line.startswith(route)]
        requests_per_second, p50, p99 = row.split()[-3:]
        assert float(requests_per_second) > 0 and float(p50) > 0 and float(p99) > 0
    assert any(re.match(r"throughput ratio validate/healthz = \d+\.\d\d", line) for line in lines)
    assert any(re.match(r"p99 ratio validate/healthz = \d+\.\d\d", line) for line in lines)


def test_bench_scale_quick_prints_every_figure_and_ratio(tmp_path):
    if shutil.which("wrk") is None:
        if os.environ.get("CI"):
            pytest.fail("wrk is missing in CI; tests/system-deps.sh installs it")
        pytest.skip("wrk is not installed (run: bash tests/system-deps.sh)")
    command = [sys.executable, str(BENCH / "bench_scale.py"), "--quick"]
    done = subprocess.run(
        [*command, "--workdir", str(tmp_path / "w")],
        cwd=REPO, capture_output=True, text=True, timeout=400, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{done.stderr[-3000:]}\n{done.stdout[-2000:]}"
    assert not (tmp_path / "w").exists(), "the scratch folder must be removed"
    servers = _table_rows(done.stdout, "Servers at 2,000 licenses")
    assert {"bare aiohttp+uvloop", "Keysmith", "floor: bare aiohttp + the real validate"} <= set(
        servers
    )
    rows = _table_rows(done.stdout, "Keysmith at scale")
    empty, small = rows["0"], rows["2,000"]
    ready, rss = float(small[3]), float(small[4])
    assert float(empty[3]) > 0 and ready > 0 and rss > 0
    requests_per_second, p50, p99 = (float(v.replace(",", "")) for v in small[5:8])
    assert requests_per_second > 0 and 0 < p50 <= p99
    ratios = [line for line in done.stdout.splitlines() if line.startswith("- ")]
    for label in (
        "ready at 2,000 vs empty",
        "RSS ready at 2,000 vs empty",
        "validate req/s at 2,000 vs bare",
        "validate p99 at 2,000 vs bare",
        "validate CPU per request at 2,000 vs bare",
        "Keysmith /healthz req/s vs the bare POST handler (issue 24's baseline)",
        "Keysmith /healthz req/s vs bare /healthz (like for like)",
        "validate req/s at 2,000 vs the floor",
        "validate CPU per request at 2,000 vs the floor",
    ):
        shown = [line for line in ratios if line.startswith(f"- {label}: ")]
        assert shown and re.search(r": \d+\.\d\dx", shown[0]), label
