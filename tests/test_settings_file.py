"""The settings file beside the database (daemon/settings.py) and the actions that write and
show it (daemon/actions/ops_settings.py), with the real daemon and the real action command:
a StartOS owner sets no environment variables, so this file is how the limits are set there."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from tests.daemon_proc import DaemonProc
from tests.test_actions import action, refused, result
from tests.test_api_support import admin, must, unique


def _unlimited_license(proc: DaemonProc) -> str:
    slug = unique("app")
    must(
        admin(proc, "POST", "/v1/admin/products", {"slug": slug, "name": "A", "price_sats": 0}), 200
    )
    policy = {"product_slug": slug, "slug": "default", "name": "D", "is_default": True}
    must(admin(proc, "POST", "/v1/admin/policies", {**policy, "max_machines": 0}), 200)
    created = admin(proc, "POST", "/v1/admin/licenses", {"product_slug": slug})
    return must(created, 200)["license_key"]


def _activations(proc: DaemonProc, key: str, count: int) -> list[dict]:
    answers = []
    for n in range(count):
        body = {"key": key, "fingerprint": f"fp-{n}"}
        answers.append(must(proc.request("POST", "/v1/machines/activate", body), 200))
    return answers


def _shown(data: Path, **env: str) -> dict[str, tuple[str, str]]:
    members = result(action(data, "show-server-limits", **env))["result"]["value"]
    return {m["name"]: (m["value"], m["description"]) for m in members}


def _first_start(tmp_path: Path) -> Path:
    """A started-and-stopped daemon: the data folder and database exist, as on StartOS."""
    with DaemonProc(tmp_path) as proc:
        proc.stop()
    return proc.db_path.parent


def test_the_action_writes_the_file_and_the_next_start_uses_it(tmp_path):
    data = _first_start(tmp_path)
    out = result(action(data, "server-limits", json.dumps({"unlimited_seats": 3})))
    assert "restart" in out["message"]
    path = data / "settings.env"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = [ln for ln in path.read_text().splitlines() if not ln.startswith("#")]
    assert lines == ["KEYSMITH_UNLIMITED_SEATS=3"]
    assert _shown(data)["KEYSMITH_UNLIMITED_SEATS"] == ("3", "from the settings file")
    assert _shown(data)["KEYSMITH_WRITE_RATE_LIMIT"] == ("30", "default")
    with DaemonProc(tmp_path) as proc:
        answers = _activations(proc, _unlimited_license(proc), 4)
    assert [a["ok"] for a in answers] == [True, True, True, False]
    assert (answers[3]["reason"], answers[3]["seat_ceiling"]) == ("too_many_machines", 3)
    assert "KEYSMITH_UNLIMITED_SEATS" in answers[3]["message"]
    # A second run keeps what it is not given, and 'none' clears the webhook networks.
    result(action(data, "server-limits", json.dumps({"webhook_allow_networks": "10.0.3.1"})))
    result(action(data, "server-limits", json.dumps({"rate_limit": 60})))
    lines = [ln for ln in path.read_text().splitlines() if not ln.startswith("#")]
    assert lines == [
        "KEYSMITH_UNLIMITED_SEATS=3",
        "KEYSMITH_RATE_LIMIT=60",
        "KEYSMITH_WEBHOOK_ALLOW_NETWORKS=10.0.3.1",
    ]
    result(action(data, "server-limits", json.dumps({"webhook_allow_networks": "none"})))
    assert "WEBHOOK" not in path.read_text().replace("# Written", "")


@pytest.mark.parametrize(
    ("line", "variable", "expected"),
    [
        ("KEYSMITH_BOGUS=1", "KEYSMITH_BOGUS", "a name the settings file may hold"),
        ("KEYSMITH_UNLIMITED_SEATS=lots", "KEYSMITH_UNLIMITED_SEATS", "a whole number"),
        ("KEYSMITH_ADMIN_API_KEY=0123456789abcdefgh", "KEYSMITH_ADMIN_API_KEY", "a name"),
    ],
)
def test_a_bad_file_is_safe_mode_naming_the_file_and_variable(tmp_path, line, variable, expected):
    data = tmp_path / "data"
    data.mkdir()
    path = data / "settings.env"
    path.write_bytes(f"# mine\n{line}\n".encode())
    before = path.read_bytes()
    with DaemonProc(tmp_path) as proc:
        record = proc.wait_for("failed")
        assert record["cause"]["kind"] == "settings"
        code, _out, err = proc.health()
        assert code == 1
        assert f"{variable}=" in err and f"in the settings file {path}" in err
        assert expected in err and "action 'Server limits'" in err
        assert proc.stop() == 0
    assert not proc.db_path.exists()  # the database was not opened
    assert path.read_bytes() == before
    # The action that repairs the file still runs, and says it replaced the bad one.
    out = result(action(data, "server-limits", json.dumps({"unlimited_seats": 7})))
    assert "was not valid" in out["message"] and variable in out["message"]
    lines = [ln for ln in path.read_text().splitlines() if not ln.startswith("#")]
    assert lines == ["KEYSMITH_UNLIMITED_SEATS=7"]


def test_the_environment_wins_over_the_file(tmp_path):
    data = _first_start(tmp_path)
    (data / "settings.env").write_text("KEYSMITH_UNLIMITED_SEATS=3\n")
    env = {"KEYSMITH_UNLIMITED_SEATS": "5"}
    assert _shown(data, **env)["KEYSMITH_UNLIMITED_SEATS"] == ("5", "from the environment")
    out = result(action(data, "server-limits", json.dumps({"unlimited_seats": 4}), **env))
    assert "environment, which wins" in out["message"]
    with DaemonProc(tmp_path, env=env) as proc:
        answers = _activations(proc, _unlimited_license(proc), 6)
    assert [a["ok"] for a in answers] == [True] * 5 + [False]
    assert answers[5]["seat_ceiling"] == 5


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"unlimited_seats": -1}, "unlimited_seats"),
        ({"rate_limit": 2.5}, "rate_limit"),
        ({"wrong_codes_per_minute": "ten"}, "wrong_codes_per_minute"),
        ({"webhook_allow_networks": "10.0.3.x"}, "webhook_allow_networks"),
        ({"code_checks_per_minute": 5, "webhook_allow_networks": "nope"}, "webhook_allow_networks"),
        ({}, None),
    ],
)
def test_the_form_refuses_a_bad_value_by_field_and_writes_nothing(tmp_path, form, field):
    data = tmp_path / "data"
    data.mkdir()
    path = data / "settings.env"
    path.write_text("KEYSMITH_UNLIMITED_SEATS=3\n")
    before = path.read_bytes()
    error = refused(action(data, "server-limits", json.dumps(form)))
    assert "Nothing was changed" in error
    if field is not None:
        assert f"'{field}'" in error
    assert path.read_bytes() == before
    assert sorted(p.name for p in data.iterdir()) == ["settings.env"]  # no temporary left


def _prefill(data: Path, name: str, **env: str) -> object:
    done = action(data, "--prefill", name, **env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_form_is_prefilled_with_the_values_the_next_start_reads(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "settings.env").write_text(
        "KEYSMITH_UNLIMITED_SEATS=3\nKEYSMITH_WEBHOOK_ALLOW_NETWORKS=10.0.3.1\n"
    )
    assert _prefill(data, "server-limits", KEYSMITH_RATE_LIMIT="60") == {
        "unlimited_seats": 3,
        "write_rate_limit": 30,
        "rate_limit": 60,
        "code_checks_per_minute": 10,
        "wrong_codes_per_minute": 10,
        "webhook_allow_networks": "10.0.3.1/32",
    }
    assert _prefill(data, "issue-license") is None
    # The prefilled form, sent back as is, is accepted and keeps every value.
    filled = _prefill(data, "server-limits")
    result(action(data, "server-limits", json.dumps(filled)))
    assert _prefill(data, "server-limits") == filled
