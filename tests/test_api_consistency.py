"""Validation answers from memory must equal what the database says, after any sequence of writes.

The validate hot path reads an in-memory view of licenses and machines (see
`daemon.licensing.state`). These tests are the proof that the shortcut costs no correctness:
random sequences of admin and client writes, each followed by validations whose expected
answer is computed independently, from the database file itself. A restart (the view is
rebuilt from the database) must not change any answer either.
"""

from __future__ import annotations

import hashlib
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.daemon_proc import DaemonProc
from tests.test_api_support import admin, issue, make_product, must, rows, serving_daemon

daemon = pytest.fixture(scope="module", name="daemon")(serving_daemon)

FINGERPRINTS = (None, "fp-a", "fp-b", "fp-c")
LICENSES = ("single", "double", "bound")

WRITES = ("activate", "deactivate", "kick", "suspend", "unsuspend", "revoke")
# Each step: one write to one license, then validations of that license with every
# fingerprint in a drawn order (a validation may itself take a free seat, so order matters).
steps_strategy = st.lists(
    st.tuples(
        st.sampled_from(WRITES),
        st.sampled_from(LICENSES),
        st.sampled_from(FINGERPRINTS[1:]),
        st.permutations(FINGERPRINTS),
    ),
    min_size=1,
    max_size=8,
)


@pytest.fixture(scope="module")
def products(daemon):
    return {"single": make_product(daemon, seats=1), "double": make_product(daemon, seats=2)}


def _fresh_licenses(daemon, products) -> dict[str, dict]:
    return {
        "single": issue(daemon, products["single"]),
        "double": issue(daemon, products["double"]),
        "bound": issue(daemon, products["double"], fingerprint="fp-a"),
    }


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=steps_strategy)
def test_every_validation_matches_the_database_after_any_writes(daemon, products, steps):
    licenses = _fresh_licenses(daemon, products)
    for action, name, write_fingerprint, probe_order in steps:
        lic = licenses[name]
        _write(daemon, action, lic, write_fingerprint)
        for fingerprint in probe_order:
            expected = _expected_reason(daemon, lic["license_id"], fingerprint)
            body = {"key": lic["license_key"]}
            if fingerprint is not None:
                body["fingerprint"] = fingerprint
            answer = must(daemon.request("POST", "/v1/validate", body), 200)
            assert answer.get("reason") == expected, (action, name, fingerprint)


def test_a_restart_rebuilds_exactly_the_same_answers(tmp_path):
    with DaemonProc(tmp_path) as first:
        single = make_product(first, seats=1)
        double = make_product(first, seats=2)
        licenses = [issue(first, single), issue(first, double), issue(first, double)]
        licenses.append(issue(first, double, fingerprint="fp-b"))
        licenses.append(issue(first, double, expires_at=int(time.time()) + 3600))
        for lic, fingerprint in [
            (licenses[0], "fp-a"),
            (licenses[1], "fp-a"),
            (licenses[1], "fp-b"),
            (licenses[3], "fp-b"),
        ]:
            _write(first, "activate", lic, fingerprint)
        _write(first, "revoke", licenses[2], "fp-a")
        _write(first, "suspend", licenses[4], "fp-a")
        before = _answers(first, licenses)
    with DaemonProc(tmp_path) as second:
        after = _answers(second, licenses)
    assert after == before
    assert {a.get("reason") for a in before.values()} >= {
        None,
        "revoked",
        "suspended",
        "fingerprint_mismatch",
        "too_many_machines",
    }


def _answers(proc: DaemonProc, licenses: list[dict]) -> dict[tuple[str, str | None], dict]:
    """Validations that cannot claim a seat (so asking does not change the state)."""
    answers = {}
    for lic in licenses:
        for fingerprint in ("fp-a", "fp-b", "fp-c", None):
            body = {"key": lic["license_key"]}
            if fingerprint is not None:
                body["fingerprint"] = fingerprint
            if _expected_reason(proc, lic["license_id"], fingerprint) is None and (
                fingerprint is not None and not _has_machine(proc, lic, fingerprint)
            ):
                continue  # this one would take a free seat
            answers[(lic["license_id"], fingerprint)] = must(
                proc.request("POST", "/v1/validate", body), 200
            )
    return answers


def _write(proc: DaemonProc, action: str, lic: dict, fingerprint: str) -> None:
    path = f"/v1/admin/licenses/{lic['license_id']}"
    if action in ("suspend", "unsuspend", "revoke"):
        status, _ = admin(proc, "POST", f"{path}/{action}")
        assert status in (200, 404, 409)
    elif action in ("activate", "deactivate"):
        body = {"key": lic["license_key"], "fingerprint": fingerprint}
        must(proc.request("POST", f"/v1/machines/{action}", body), 200)
    elif action == "kick":
        machines = rows(
            proc,
            "SELECT id FROM machines WHERE license_id = ? AND deactivated_at IS NULL ORDER BY id",
            lic["license_id"],
        )
        if machines:
            must(admin(proc, "POST", f"/v1/admin/machines/{machines[0][0]}/deactivate"), 200)


def _has_machine(proc: DaemonProc, lic: dict, fingerprint: str) -> bool:
    return bool(
        rows(
            proc,
            "SELECT 1 FROM machines WHERE license_id = ? AND fingerprint = ? "
            "AND deactivated_at IS NULL",
            lic["license_id"],
            _hash(fingerprint),
        )
    )


def _expected_reason(proc: DaemonProc, license_id: str, fingerprint: str | None) -> str | None:
    """What validate must answer, worked out from the database file alone (None = ok)."""
    [(status, expires_at, bound, seats)] = rows(
        proc,
        "SELECT l.status, l.expires_at, l.fingerprint_hash, COALESCE(p.max_machines, 1) "
        "FROM licenses l LEFT JOIN policies p ON p.id = l.policy_id WHERE l.id = ?",
        license_id,
    )
    if status != "active":
        return status
    if expires_at is not None and time.time() >= expires_at:
        return "expired"
    if fingerprint is None:
        return "fingerprint_mismatch" if bound else None
    mine = _hash(fingerprint)
    if bound and bound != mine:
        return "fingerprint_mismatch"
    active = [
        r[0]
        for r in rows(
            proc,
            "SELECT fingerprint FROM machines WHERE license_id = ? AND deactivated_at IS NULL",
            license_id,
        )
    ]
    if mine in active or len(active) < seats:
        return None
    return "fingerprint_mismatch" if seats == 1 else "too_many_machines"


def _hash(fingerprint: str) -> str:
    return hashlib.sha256(fingerprint.encode()).hexdigest()
