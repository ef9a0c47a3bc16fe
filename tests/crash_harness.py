"""Crash injection: SIGKILL the migrator (`migrate run`) or the daemon (`serve`) at a random
moment of an upgrade, then check that nothing was lost and the next boot needs no human.

The upgrade is the hard case from the incident, on a populated database at v10:
  - 0002 re-saved with CRLF line endings        -> re-stamp (no SQL)
  - v9's recorded checksum poisoned             -> re-run of the 0009 rebuild, after a backup
  - 0011 and eight probe migrations pending     -> applied one by one
so a random kill lands before the backup, during it, during the re-stamp or the re-run, or
between two migrations.

Each kill is aimed at one phase (see PHASES) or at a random moment; the phase it landed in is
read back from the database and tallied.

Invariants checked after every kill:
  1. the database opens and passes integrity_check and foreign_key_check;
  2. every migration is all-or-nothing: its ledger row exists exactly when its effects do;
  3. no seeded row is lost;
  4. the next run completes without help and reaches the same end state as an unkilled run,
     and leaves no half-written backup behind.

Soak: `python -m tests.crash_harness --kills 500 [--mode migrate|serve|both|webhook]` prints
the tally.

Webhook mode (`webhook_soak`): a serving daemon issues licenses as fast as a client asks while
a flaky receiver (tests/receiver.py, down or up at random) takes the `license.issued` events;
the daemon is SIGKILLed at a random moment with events pending, and restarted. At the end the
receiver stays up until the outbox drains, then: every license in the database arrived
(0 lost), no license arrived under two delivery ids and no event arrived for a license that is
not there (duplicates only of one delivery, as at-least-once delivery allows), and the first
arrivals came in the order the licenses were issued.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests import kit
from tests.daemon_proc import DaemonProc, base_env
from tests.receiver import ALLOW_LOOPBACK, Receiver
from tests.seed import count_rows, seed
from tests.test_api_support import admin, issue, make_product, must

REPO = Path(__file__).resolve().parent.parent
POISON = b"\xef" * 48
# Probe migrations numbered right after the shipped ones.
PROBES = range(kit.latest_version() + 1, kit.latest_version() + 9)


@dataclass
class Scenario:
    root: Path
    migrations: Path
    template: Path
    seeded_rows: dict[str, int]
    final_dump: str
    versions: list[int]
    clean_seconds: float
    startup_seconds: float
    tally: collections.Counter = field(default_factory=collections.Counter)


def build(root: Path, scale: int = 120) -> Scenario:
    """The template database and migrations folder, and the end state of an unkilled run."""
    migrations = root / "migrations"
    shutil.copytree(kit.MIGRATIONS, migrations)
    template = root / "template.db"
    kit.apply_range(template, migrations, upto=10)
    conn = kit.connect(template)
    seed(conn, 10, scale=scale)
    seeded = count_rows(conn)
    conn.execute("UPDATE _sqlx_migrations SET checksum = ? WHERE version = 9", (POISON,))
    conn.close()
    kit.file_bytes(template)  # checkpoint: the template is one self-contained file
    crlf = next(migrations.glob("0002_*.sql"))
    crlf.write_bytes(crlf.read_bytes().replace(b"\n", b"\r\n"))
    for version in PROBES:
        (migrations / f"{version:04d}_crash_probe_{version}.sql").write_text(
            f"CREATE TABLE crash_probe_{version} (id INTEGER PRIMARY KEY, note TEXT NOT NULL);\n"
            f"INSERT INTO crash_probe_{version} (note) VALUES ('applied {version}');\n"
            # Some work per probe, so kills also land inside and between migrations.
            f"CREATE TABLE crash_work_{version} AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL "
            f"SELECT i + 1 FROM n WHERE i < 20000)\n"
            f"SELECT i, printf('%016x', i * 2654435761) AS v FROM n;\n"
        )
    reference = root / "reference.db"
    shutil.copy(template, reference)
    started = time.monotonic()
    run_cli(reference, migrations)
    clean_seconds = time.monotonic() - started
    started = time.monotonic()
    run_cli(reference, migrations)  # a no-op: interpreter start-up plus planning
    startup_seconds = time.monotonic() - started
    conn = kit.connect(reference)
    final = kit.dump(conn)
    versions = [v for (v,) in conn.execute("SELECT version FROM _sqlx_migrations ORDER BY 1")]
    conn.close()
    return Scenario(
        root, migrations, template, seeded, final, versions, clean_seconds, startup_seconds
    )


def run_cli(db: Path, migrations: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        migrate_command(db, migrations), cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return result


def migrate_command(db: Path, migrations: Path) -> list[str]:
    return [sys.executable, "-m", "daemon", "migrate", "run", "--db", str(db),
            "--migrations", str(migrations), "--idempotent", "9"]  # fmt: skip


# Every phase a kill can land in, in the order a run passes them. A kill aimed at a phase waits
# for the moment that starts it, seen from outside the process: the migrator's progress lines
# on stderr (`migrate run`) or the progress in the status file (`serve`), a backup's .partial
# file, the last ledger row. So the CI run covers every phase deterministically, and the soak
# adds kills at random moments in between.
BEFORE, DURING_BACKUP, AFTER_BACKUP = (
    "before any change",
    "during backup",
    "after backup, before the re-run",
)
AFTER_RERUN, BETWEEN, AFTER_LAST = (
    "after the re-run of 9",
    "between migrations",
    "after the last migration",
)
PHASES = (BEFORE, DURING_BACKUP, AFTER_BACKUP, AFTER_RERUN, BETWEEN, AFTER_LAST)
RANDOM = "random moment"
WAIT_SECONDS = 120.0


class Run:
    """The process under test and what can be seen of it from outside."""

    def __init__(self, scenario: Scenario, case: Path, db: Path, mode: str) -> None:
        self.db, self.mode = db, mode
        self.lines: list[str] = []
        if mode == "migrate":
            self.proc = subprocess.Popen(
                migrate_command(db, scenario.migrations), cwd=REPO,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            self.reader = threading.Thread(target=self._read_stderr, daemon=True)
            self.reader.start()
            self.daemon = None
        else:
            self.daemon = DaemonProc(
                case, db_path=db, migrations_dir=scenario.migrations, wait=None
            )
            self.daemon.start()
            self.proc = self.daemon.proc

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)

    def started_version(self) -> int | None:
        """The version of the step in progress (0 for the backup), or None before the first."""
        if self.daemon is not None:
            record = self.daemon.status() or {}
            progress = record.get("progress") if record.get("pid") == self.proc.pid else None
            if not progress:
                return None
            return 0 if progress.get("action") == "backup" else progress.get("version")
        for line in reversed(self.lines):  # warnings (a heal) come between progress lines
            if match := re.match(r"step \d+ of \d+: \w+ (\d+) ", line):
                return int(match[1])
            if line.startswith("backing up"):
                return 0
        return None

    def wait(self, condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + WAIT_SECONDS
        while not condition():
            if self.proc.poll() is not None:  # it may have passed the moment as it ended
                if self.daemon is None:
                    self.reader.join(timeout=10)
                assert condition(), f"the run ended before the phase aimed at: {self.lines[-3:]}"
                return
            assert time.monotonic() < deadline, "the phase aimed at never came"
            time.sleep(0.0005)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        if self.proc.stderr is not None:
            self.reader.join(timeout=10)
            self.proc.stderr.close()


def kill_once(scenario: Scenario, mode: str, rng: random.Random, aim: str = RANDOM) -> str:
    """One kill aimed at a phase (or at a random moment); returns the phase it landed in.
    Raises on a broken invariant."""
    case = Path(tempfile.mkdtemp(dir=scenario.root))
    db = case / "data" / "keysmith.db"
    db.parent.mkdir()
    shutil.copy(scenario.template, db)
    run = Run(scenario, case, db, mode)
    _wait_for(run, aim, scenario, rng)
    run.kill()
    phase = check_after_kill(scenario, db)
    recover(scenario, case, db, mode)
    shutil.rmtree(case)
    scenario.tally[_group(phase)] += 1
    return phase


def _wait_for(run: Run, aim: str, scenario: Scenario, rng: random.Random) -> None:
    partials = run.db.parent / "backups"
    if aim == RANDOM:  # mostly inside the run's work, after start-up and planning
        time.sleep(rng.uniform(scenario.startup_seconds * 0.8, scenario.clean_seconds * 1.05))
        if run.daemon is not None:
            time.sleep(0.15)  # the daemon's own start-up before it migrates
    elif aim == BEFORE:  # still starting: nothing planned yet
        time.sleep(rng.uniform(0.1, 0.5) * scenario.startup_seconds)
    elif aim == DURING_BACKUP:  # the copy takes milliseconds: look for it without pausing
        run.wait(lambda: run.started_version() == 0)
        while run.proc.poll() is None and not _partial_exists(partials):
            pass
    elif aim == AFTER_BACKUP:  # the re-run of 9 has begun, not committed
        run.wait(lambda: (run.started_version() or 0) >= 9)
    elif aim == AFTER_RERUN:  # 9 committed, 11 begun
        run.wait(lambda: (run.started_version() or 0) >= 11)
    elif aim == BETWEEN:
        probe = rng.choice(PROBES[1:])
        run.wait(lambda: (run.started_version() or 0) >= probe)
    else:
        assert aim == AFTER_LAST, aim
        run.wait(lambda: (run.started_version() or 0) >= PROBES[-1])
        run.wait(lambda: PROBES[-1] in kit.checksums(run.db))


def _partial_exists(folder: Path) -> bool:
    try:
        return any(name.endswith(".partial") for name in os.listdir(folder))
    except FileNotFoundError:
        return False


def _group(phase: str) -> str:
    return BETWEEN if phase.startswith(BETWEEN) else phase


def check_after_kill(scenario: Scenario, db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        kit.assert_db_clean(conn)
        ledger = kit.checksums(db)
        tables = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        for version in PROBES:
            applied = version in ledger
            present = f"crash_probe_{version}" in tables
            assert applied == present, f"probe {version}: ledger row {applied}, table {present}"
            if present:
                rows = conn.execute(f"SELECT count(*) FROM crash_probe_{version}").fetchone()
                assert rows == (1,), f"probe {version} ran {rows[0]} times"
        assert 9 in ledger, "the re-run of 9 lost its ledger row"
        rows = count_rows(conn)
        lost = {t: n for t, n in scenario.seeded_rows.items() if rows.get(t, 0) < n}
        assert not lost, f"seeded rows lost: {lost}"
    finally:
        conn.close()
    return _phase(scenario, db, ledger)


def _phase(scenario: Scenario, db: Path, ledger: dict[int, bytes]) -> str:
    crlf = next(scenario.migrations.glob("0002_*.sql"))
    restamped = ledger[2] == hashlib.sha384(crlf.read_bytes()).digest()
    backups = list((db.parent / "backups").glob("*")) if (db.parent / "backups").exists() else []
    probes = sum(1 for v in PROBES if v in ledger)
    if ledger[9] == POISON:
        if any(b.name.endswith(".partial") for b in backups):
            return DURING_BACKUP
        if backups:
            return AFTER_BACKUP
        assert not restamped, "0002 was re-stamped before the backup"
        return BEFORE
    if 11 not in ledger:
        return AFTER_RERUN
    if probes < len(PROBES):
        return f"{BETWEEN} ({probes} of {len(PROBES)} probes applied)"
    return AFTER_LAST


def recover(scenario: Scenario, case: Path, db: Path, mode: str) -> None:
    """The next boot completes without help and reaches the unkilled end state."""
    if mode == "migrate":
        run_cli(db, scenario.migrations)
    else:
        with DaemonProc(case, db_path=db, migrations_dir=scenario.migrations) as daemon:
            state = daemon.status()["state"]
            assert state == "serving", f"next boot ended {state}: {daemon.log_text()[-2000:]}"
    conn = kit.connect(db)
    try:
        recovered = _comparable(kit.dump(conn))
        assert recovered == _comparable(scenario.final_dump), "the recovered database differs"
        versions = [v for (v,) in conn.execute("SELECT version FROM _sqlx_migrations ORDER BY 1")]
        assert versions == scenario.versions
    finally:
        conn.close()
    leftovers = list((db.parent / "backups").glob("*.partial"))
    assert not leftovers, f"half-written backups left behind: {leftovers}"


def _comparable(dump: str) -> str:
    """A served boot also stores the admin key given by the environment (and audits it); that
    is the service starting, not the upgrade, so it is left out of the comparison."""
    return "\n".join(
        line
        for line in dump.splitlines()
        if "'admin_key.set'" not in line and not line.startswith("('admin_api_key', ")
    )


def schedule(kills: int, modes: list[str]) -> list[tuple[str, str]]:
    """(mode, aim) per kill: every phase in turn in every mode, and every other kill at a
    random moment, to find what no aim foresaw."""
    aims = [aim for phase in PHASES for aim in (phase, RANDOM)]
    return [(modes[n % len(modes)], aims[(n // len(modes)) % len(aims)]) for n in range(kills)]


def soak(kills: int, modes: list[str], seed_value: int) -> collections.Counter:
    rng = random.Random(seed_value)
    with tempfile.TemporaryDirectory() as root:
        scenario = build(Path(root))
        print(
            f"clean run {scenario.clean_seconds:.2f} s, start-up {scenario.startup_seconds:.2f} s;"
            f" {kills} kills, modes {modes}"
        )
        for n, (mode, aim) in enumerate(schedule(kills, modes)):
            kill_once(scenario, mode, rng, aim)
            scenario.tally[f"mode {mode}"] += 1
            if (n + 1) % 50 == 0:
                print(f"  {n + 1} kills, all invariants held", flush=True)
    return scenario.tally


WEBHOOK_ENV = {
    "KEYSMITH_WEBHOOK_BACKOFF": "0.1",
    "KEYSMITH_WEBHOOK_TIMEOUT": "1",
    "KEYSMITH_WEBHOOK_MAX_ATTEMPTS": "1000",
    **ALLOW_LOOPBACK,
}


@dataclass
class WebhookTally:
    kills: int = 0
    issued: int = 0
    received: int = 0
    duplicates: int = 0
    pending_at_kill: list[int] = field(default_factory=list)
    last: DaemonProc | None = None  # the daemon running now


def webhook_soak(root: Path, kills: int, seed_value: int) -> WebhookTally:
    """Kill the serving daemon `kills` times with webhook events pending; check nothing was lost."""
    rng = random.Random(seed_value)
    tally = WebhookTally()
    with Receiver(mode="down") as receiver:
        tally.last = DaemonProc(root, env=dict(WEBHOOK_ENV)).start()
        try:
            _kill_while_pending(tally.last, receiver, kills, rng, tally)
            daemon = tally.last
            receiver.mode = "ok"
            deadline = time.monotonic() + 120
            while _pending(daemon.db_path):
                assert time.monotonic() < deadline, "the outbox did not drain"
                time.sleep(0.1)
        finally:
            tally.last.close()
        _check_deliveries(daemon.db_path, receiver, tally)
    return tally


def _kill_while_pending(
    daemon: DaemonProc, receiver: Receiver, kills: int, rng: random.Random, tally: WebhookTally
) -> None:
    """`kills` rounds of: issue licenses while the receiver flaps, SIGKILL, restart."""
    body = {"url": receiver.url, "event_types": ["license.issued"]}
    must(admin(daemon, "POST", "/v1/admin/webhook-endpoints", body), 200)
    product = make_product(daemon)
    for _ in range(kills):
        stop = threading.Event()
        writer = threading.Thread(target=_issue_until, args=(daemon, product, stop))
        writer.start()
        deadline = time.monotonic() + rng.uniform(0.3, 1.5)
        while time.monotonic() < deadline:
            receiver.mode = rng.choice(["ok", "down"])
            time.sleep(0.1)
        tally.pending_at_kill.append(_pending(daemon.db_path))
        daemon.kill()
        stop.set()
        writer.join()
        tally.kills += 1
        # Restarted, then stopped cleanly (SIGTERM, events still pending) and started again:
        # kills in a row would rightly trip the crash-loop guard (safe mode after 3).
        for _ in range(2):
            assert daemon.stop() in (0, -signal.SIGKILL)
            daemon = DaemonProc(daemon.tmp_path, db_path=daemon.db_path, env=dict(WEBHOOK_ENV))
            tally.last = daemon.start()
            assert daemon.status()["state"] == "serving", daemon.log_text()[-2000:]


def _issue_until(daemon: DaemonProc, product: str, stop: threading.Event) -> None:
    """Issue licenses until told to stop; the kill cuts some requests off (that is the point)."""
    while not stop.is_set():
        try:
            issue(daemon, product)
        except (OSError, AssertionError):
            return  # the daemon is gone


def _pending(db: Path) -> int:
    with contextlib.closing(kit.connect(db)) as conn:
        found = conn.execute("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'")
        return found.fetchone()[0]


def _check_deliveries(db: Path, receiver: Receiver, tally: WebhookTally) -> None:
    with contextlib.closing(kit.connect(db)) as conn:
        issued = [row[0] for row in conn.execute("SELECT id FROM licenses ORDER BY rowid")]
    arrived = receiver.delivered()
    delivery_of: dict[str, set[str]] = collections.defaultdict(set)
    first_arrival: list[str] = []
    for seen in arrived:
        license_id = seen.event["data"]["license_id"]
        if license_id not in delivery_of:
            first_arrival.append(license_id)
        delivery_of[license_id].add(seen.headers["X-Keysat-Delivery"])
    lost = set(issued) - set(delivery_of)
    assert not lost, f"{len(lost)} of {len(issued)} events lost"
    assert set(delivery_of) <= set(issued), "an event for a license that never committed"
    assert all(len(ids) == 1 for ids in delivery_of.values()), "one license, two deliveries"
    assert first_arrival == issued, "the events arrived out of order"
    tally.issued = len(issued)
    tally.received = len(arrived)
    tally.duplicates = len(arrived) - len(issued)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=500)
    parser.add_argument("--mode", choices=["migrate", "serve", "both", "webhook"], default="both")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.mode == "webhook":
        with tempfile.TemporaryDirectory() as root:
            found = webhook_soak(Path(root), args.kills, args.seed)
        print(
            f"webhook mode: {found.kills} kills, {found.issued} licenses issued, every event "
            f"delivered (0 lost), {found.duplicates} repeated deliveries (same delivery id), "
            f"pending at the kills: max {max(found.pending_at_kill)}, "
            f"median {sorted(found.pending_at_kill)[len(found.pending_at_kill) // 2]}"
        )
        return 0
    modes = ["migrate", "serve"] if args.mode == "both" else [args.mode]
    tally = soak(args.kills, modes, args.seed)
    print("tally (every kill passed every invariant):")
    for phase, count in sorted(tally.items()):
        print(f"  {count:5d}  {phase}")
    return 0


if __name__ == "__main__":
    base_env()  # fail early if the test helpers are not importable
    sys.exit(main())
