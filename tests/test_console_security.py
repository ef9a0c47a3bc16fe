"""The console's sign-in seen from HTTP alone (no browser): the Secure cookie and the client
address believed only from a trusted proxy, the per-address sign-in limit (the global pace:
tests/test_attack_trust.py), the console password setting, and the boot history the Upgrades
page lists."""

from __future__ import annotations

import re
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator

import pytest

from daemon.console import auth
from daemon.settings import Settings
from daemon.status import BOOT_HISTORY_LIMIT, append_boot, boots_path, read_boots
from tests import kit
from tests.daemon_proc import DaemonProc
from tests.test_api_support import db_dump, issue, make_product, must
from tests.test_hardening_api import TRICKLE_SECONDS, trickle

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
        turn = limiter.admit("203.0.113.5")
        assert isinstance(turn, auth.Turn)
        limiter.finish(turn, False)
    assert limiter.admit("203.0.113.5") == auth.Paused(int(auth.WINDOW_SECONDS) + 1)
    now[0] += auth.WINDOW_SECONDS / 2
    paused = limiter.admit("203.0.113.5")
    assert isinstance(paused, auth.Paused)
    assert 0 < paused.retry_after <= auth.WINDOW_SECONDS / 2 + 1
    now[0] += auth.WINDOW_SECONDS / 2 + 1
    assert isinstance(limiter.admit("203.0.113.5"), auth.Turn)


# ----- a signed-in console over plain HTTP: headers, slow bodies, suspend -----

SLOW_BODY_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def console(tmp_path_factory) -> Iterator[DaemonProc]:
    env = {
        "KEYSMITH_CONSOLE_PASSWORD": PASSWORD,
        "KEYSMITH_BODY_TIMEOUT": str(SLOW_BODY_TIMEOUT),
    }
    with DaemonProc(tmp_path_factory.mktemp("console"), env=env) as d:
        d.wait_for("serving")
        yield d


def session_cookie(d: DaemonProc) -> str:
    status, headers = sign_in(d.url, PASSWORD)
    assert status == 303
    return headers["Set-Cookie"].split(";", 1)[0]


def fetch(d: DaemonProc, method: str, path: str, cookie: str | None = None, form=None):
    """(status, headers, body text) of one console request, redirects not followed."""
    request = urllib.request.Request(
        f"{d.url}{path}",
        method=method,
        data=None if form is None else urllib.parse.urlencode(form).encode(),
        headers={"Cookie": cookie} if cookie else {},
    )
    try:
        with OPENER.open(request, timeout=30) as answer:
            return answer.status, answer.headers, answer.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def test_every_kind_of_console_page_carries_the_security_headers(console):
    cookie = session_cookie(console)
    pages = {
        "sign-in page": ("GET", "/admin/login", None, 200),
        "signed-in page": ("GET", "/admin/licenses", cookie, 200),
        "redirect to sign in": ("GET", "/admin/audit", None, 303),
        "static file": ("GET", "/admin/static/console.css", None, 200),
        "unknown page": ("GET", "/admin/no-such-page", cookie, 404),
        "unknown static file": ("GET", "/admin/static/nope.js", None, 404),
        "refused form": ("POST", "/admin/codes", cookie, 403),
    }
    for kind, (method, path, with_cookie, expected) in pages.items():
        form = {} if method == "POST" else None
        status, headers, body = fetch(console, method, path, with_cookie, form)
        assert status == expected, (kind, status, body[:300])
        assert headers["Content-Security-Policy"] == (
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
        ), kind
        assert headers["X-Content-Type-Options"] == "nosniff", kind
        assert headers["X-Frame-Options"] == "DENY", kind
        assert headers["Referrer-Policy"] == "same-origin", kind
        expected_cache = "public, max-age=3600" if kind == "static file" else "no-store"
        assert headers["Cache-Control"] == expected_cache, kind
        if status == 404:
            assert "text/html" in headers["Content-Type"], kind
            assert "Nothing was changed" in body, kind


def csrf_of(d: DaemonProc, path: str, cookie: str) -> str:
    status, _, body = fetch(d, "GET", path, cookie)
    assert status == 200, body[:300]
    found = re.search(r'name="csrf" value="([^"]+)"', body)
    assert found is not None, body[:300]
    return found.group(1)


def test_suspend_and_unsuspend_from_the_console(console):
    product = make_product(console)
    issued = issue(console, product)
    key, page = issued["license_key"], f"/admin/licenses/{issued['license_id']}"
    cookie = session_cookie(console)

    def validate() -> tuple[bool, str | None]:
        answer = must(console.request("POST", "/v1/validate", {"key": key}), 200)
        return answer["ok"], answer.get("reason")

    assert validate() == (True, None)
    for action, status_after, validated in (
        ("suspend", "suspended", (False, "suspended")),
        ("unsuspend", "active", (True, None)),
    ):
        token = csrf_of(console, page, cookie)
        status, headers, _ = fetch(console, "POST", f"{page}/{action}", cookie, {"csrf": token})
        assert status == 303 and headers["Location"] == f"{page}?done={action}", action
        _, _, body = fetch(console, "GET", f"{page}?done={action}", cookie)
        assert f'id="license-status">{status_after}<' in body, action
        assert validate() == validated, action
    # Without the session's token, nothing changes.
    before = db_dump(console)
    status, _, body = fetch(console, "POST", f"{page}/suspend", cookie, {"csrf": "x" * 43})
    assert status == 403 and "Nothing was changed" in body
    assert db_dump(console) == before and validate() == (True, None)


@pytest.mark.parametrize("signed_in", [False, True], ids=["sign-in", "signed-in form"])
def test_a_trickled_console_form_is_cut_off(console, signed_in):
    """A body trickled byte by byte (here, the password itself) is cut off after the body
    timeout with the console's own page, which echoes nothing that was sent."""
    path = "/admin/codes" if signed_in else "/admin/login"
    cookie = f"Cookie: {session_cookie(console)}\r\n" if signed_in else ""
    body = urllib.parse.urlencode({"password": PASSWORD}).encode()
    sockets = [socket.create_connection(("127.0.0.1", console.port)) for _ in range(2)]
    before = db_dump(console)
    try:
        for sock in sockets:
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{console.port}\r\n{cookie}"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {len(body) + 4000}\r\n\r\n".encode()
            )
        closed = trickle(sockets, [bytes([b]) for b in body])
    finally:
        for sock in sockets:
            sock.close()
    assert len(closed) == len(sockets), f"still open after {TRICKLE_SECONDS} s: {closed}"
    answered = [data for data in closed.values() if data]
    assert answered, "cut off without an answer"
    for data in answered:
        head, _, page = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), data[:300]
        assert b"text/html" in head and b"Content-Security-Policy" in head, head
        assert b"Nothing was changed" in page, page[:300]
        assert b"correct" not in data and b"password=" not in data
    assert db_dump(console) == before
    # The console still serves a whole form sent at once.
    assert sign_in(console.url, PASSWORD)[0] == 303
