"""The console's sign-in seen from HTTP alone (no browser): the Secure cookie and the client
address believed only from a trusted proxy, the per-address and global sign-in limits, the
console password setting, and the boot history the Upgrades page lists."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request

from daemon.console import auth
from daemon.settings import Settings
from daemon.status import BOOT_HISTORY_LIMIT, append_boot, boots_path, read_boots
from tests import kit
from tests.daemon_proc import DaemonProc

PASSWORD = "correct horse battery staple"


class _Keep(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


OPENER = urllib.request.build_opener(_Keep)


def sign_in(url: str, password: str, headers: dict[str, str] | None = None):
    """POST the sign-in form; (status, headers) of the answer itself, never followed."""
    request = urllib.request.Request(
        f"{url}/admin/login",
        data=urllib.parse.urlencode({"password": password}).encode(),
        headers=headers or {},
    )
    try:
        with OPENER.open(request, timeout=30) as answer:
            return answer.status, answer.headers
    except urllib.error.HTTPError as e:
        return e.code, e.headers


def test_secure_cookie_and_client_address_only_from_a_trusted_proxy(tmp_path):
    env = {"KEYSMITH_CONSOLE_PASSWORD": PASSWORD}
    with DaemonProc(tmp_path / "a", env=env) as d:  # loopback is a trusted proxy by default
        status, headers = sign_in(d.url, PASSWORD, {"X-Forwarded-Proto": "https"})
        assert status == 303 and "Secure" in headers["Set-Cookie"]
        status, headers = sign_in(d.url, PASSWORD)
        assert status == 303 and "Secure" not in headers["Set-Cookie"]
        # Five wrong passwords pause that client address, and only that one.
        mallory = {"X-Forwarded-For": "198.51.100.7, 203.0.113.5"}
        for _ in range(4):
            assert sign_in(d.url, "wrong password!", mallory)[0] == 401
        status, headers = sign_in(d.url, "wrong password!", mallory)
        assert status == 429 and 0 < int(headers["Retry-After"]) <= 301
        assert sign_in(d.url, PASSWORD, mallory)[0] == 429  # even the right password waits
        assert sign_in(d.url, PASSWORD, {"X-Forwarded-For": "203.0.113.6"})[0] == 303

    env["KEYSMITH_TRUSTED_PROXIES"] = "10.9.9.9"
    with DaemonProc(tmp_path / "b", env=env) as d:  # now loopback is a plain client
        status, headers = sign_in(d.url, PASSWORD, {"X-Forwarded-Proto": "https"})
        assert status == 303 and "Secure" not in headers["Set-Cookie"]
        for n in range(5):
            sign_in(d.url, "wrong password!", {"X-Forwarded-For": f"203.0.113.{n}"})
        # The claimed addresses were ignored: all five counted against the peer itself.
        assert sign_in(d.url, PASSWORD, {"X-Forwarded-For": "203.0.113.99"})[0] == 429


def test_the_global_limit_pauses_sign_in_for_every_address(tmp_path):
    with DaemonProc(tmp_path, env={"KEYSMITH_CONSOLE_PASSWORD": PASSWORD}) as d:
        for n in range(50):  # ten addresses, each under its own limit of five
            status, _ = sign_in(d.url, "wrong password!", {"X-Forwarded-For": f"192.0.2.{n // 5}"})
            assert status in (401, 429)
        status, headers = sign_in(d.url, PASSWORD, {"X-Forwarded-For": "192.0.2.200"})
        assert status == 429 and int(headers["Retry-After"]) > 0


def test_the_console_password_setting_is_checked_and_never_echoed():
    secret = "short-pass"
    settings, errors = Settings.lenient({"KEYSMITH_CONSOLE_PASSWORD": secret})
    assert settings.console_password is None
    (error,) = errors
    assert error.variable == "KEYSMITH_CONSOLE_PASSWORD" and secret not in str(error)
    _, errors = Settings.lenient({"KEYSMITH_TRUSTED_PROXIES": "10.0.0.0/8, not-an-address"})
    assert [e.variable for e in errors] == ["KEYSMITH_TRUSTED_PROXIES"]
    settings, errors = Settings.lenient({"KEYSMITH_TRUSTED_PROXIES": "10.0.3.1, fd00::/8"})
    assert errors == [] and [str(n) for n in settings.trusted_proxies] == [
        "10.0.3.1/32",
        "fd00::/8",
    ]


def test_every_boot_is_recorded_and_the_history_stays_bounded(tmp_path):
    with DaemonProc(tmp_path) as first:
        first.wait_for("serving")
    with DaemonProc(tmp_path) as second:
        second.wait_for("serving")
    path = boots_path(second.status_path)
    latest = kit.latest_version()
    newest, oldest = read_boots(path)
    assert oldest["state"] == newest["state"] == "serving"
    assert oldest["applied"] == list(range(1, latest + 1)) and newest["applied"] == []
    assert newest["boot_started_at"] > oldest["boot_started_at"]

    for n in range(BOOT_HISTORY_LIMIT + 10):
        append_boot(path, {"state": "serving", "n": n})
    path.write_bytes(path.read_bytes() + b"{torn line\n")  # a crash mid-write elsewhere
    kept = read_boots(path)
    assert len(kept) == BOOT_HISTORY_LIMIT
    assert [k["n"] for k in kept[:2]] == [BOOT_HISTORY_LIMIT + 9, BOOT_HISTORY_LIMIT + 8]


def test_an_unreadable_database_closes_the_console_with_a_reason(tmp_path):
    db = tmp_path / "data" / "keysmith.db"
    db.parent.mkdir(parents=True)
    db.write_bytes(b"not a database, " * 512)
    before = db.read_bytes()
    with DaemonProc(tmp_path, db_path=db) as d:
        d.wait_for("failed")
        status, body = d.request("GET", "/admin/login")
        assert (
            status == 503 and "cannot read its password" in body and "nothing was changed" in body
        )
    # With the password from the environment the console opens, and explains the failure.
    with DaemonProc(tmp_path, db_path=db, env={"KEYSMITH_CONSOLE_PASSWORD": PASSWORD}) as d:
        d.wait_for("failed")
        status, headers = sign_in(d.url, PASSWORD)
        cookie = headers["Set-Cookie"].split(";", 1)[0]
        page = urllib.request.Request(f"{d.url}/admin/upgrades", headers={"Cookie": cookie})
        with urllib.request.urlopen(page, timeout=10) as answer:
            text = answer.read().decode()
        assert "Keysmith is in safe mode (failed)" in text
    assert db.read_bytes() == before


def test_sessions_end_when_idle_too_long_too_old_or_the_password_changes(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: now[0])
    sessions = auth.Sessions()
    token = sessions.open("password-1")
    assert token not in repr(sessions.__dict__)  # only its digest is kept
    now[0] += auth.IDLE_SECONDS - 1
    assert sessions.find(token, "password-1") is not None  # use keeps it alive
    now[0] += auth.IDLE_SECONDS + 1
    assert sessions.find(token, "password-1") is None

    opened = now[0]
    token = sessions.open("password-1")
    while sessions.find(token, "password-1") is not None:  # used every quarter hour
        assert now[0] - opened <= auth.ABSOLUTE_SECONDS, "a busy session outlived its age limit"
        now[0] += auth.IDLE_SECONDS / 2
    assert now[0] - opened > auth.ABSOLUTE_SECONDS - auth.IDLE_SECONDS  # ended by age only

    token = sessions.open("password-1")
    assert sessions.find(token, "password-2") is None
    assert sessions.find(token, "password-1") is None  # forgotten, not just hidden
    token = sessions.open("password-1")
    sessions.close(token)
    assert sessions.find(token, "password-1") is None


def test_a_paused_address_may_try_again_once_the_window_has_passed(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: now[0])
    limiter = auth.SignInLimiter()
    for _ in range(auth.PER_ADDRESS_FAILURES):
        assert limiter.retry_after("203.0.113.5") is None
        limiter.failed("203.0.113.5")
    assert limiter.retry_after("203.0.113.5") == auth.WINDOW_SECONDS + 1
    now[0] += auth.WINDOW_SECONDS / 2
    assert 0 < limiter.retry_after("203.0.113.5") <= auth.WINDOW_SECONDS / 2 + 1
    now[0] += auth.WINDOW_SECONDS / 2 + 1
    assert limiter.retry_after("203.0.113.5") is None
