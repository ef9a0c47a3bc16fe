"""The operator's console (/admin/) in a real browser: Debian's Chromium driven by Playwright,
against the real daemon on loopback, over databases the migrator's own tools set up.

Every page is photographed at desktop and phone width into `<pytest tmp>/console-screens/`
and copied to `bench/out/console/` (gitignored) for a person to look at.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from daemon.health import safe_mode_message
from tests import kit
from tests.daemon_proc import REPO, DaemonProc
from tests.receiver import ALLOW_LOOPBACK, Receiver
from tests.test_api_support import issue, make_product, must

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "correct horse battery staple"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 812}
SHOTS_COPY = REPO / "bench" / "out" / "console"
PAGES = ("", "upgrades", "products", "policies", "licenses", "codes", "audit")


# ----- set-up -----


@pytest.fixture(scope="module")
def screens(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("console-screens")


@contextlib.contextmanager
def chromium(profile: Path, **options: Any) -> Iterator:
    """A browser context in a fresh profile; the browser is Debian's, never a downloaded one.
    `options` are Playwright's (viewport, java_script_enabled, ...)."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI; tests/system-deps.sh installs it")
        pytest.skip("chromium is not installed (tests/system-deps.sh installs it as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, **options
        )
        context.set_default_timeout(15_000)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def browser_context(tmp_path) -> Iterator:
    """A fresh Chromium profile per test, at desktop width."""
    with chromium(tmp_path / "chromium-profile", viewport=DESKTOP) as context:
        yield context


def copy_migrations(tmp_path: Path) -> Path:
    target = tmp_path / "migrations"
    shutil.copytree(kit.MIGRATIONS, target)
    return target


def migration_file(folder: Path, version: int) -> Path:
    (path,) = [
        p
        for p in folder.glob("*_*.sql")
        if int(p.name.split("_", 1)[0]) == version and not p.name.endswith(".down.sql")
    ]
    return path


def full_dump(db_path: Path) -> str:
    conn = kit.connect(db_path)
    try:
        return kit.dump(conn, include_ledger=True)
    finally:
        conn.close()


def issuer_key_spellings(db_path: Path) -> list[str]:
    """The active issuer private key (32 raw bytes in `issuer_keys`) as a page or a log line
    could carry it: hex, base64 (standard and URL-safe, padded or not), and its PEM body."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        (raw,) = conn.execute("SELECT private_key FROM issuer_keys WHERE active = 1").fetchone()
    finally:
        conn.close()
    private = Ed25519PrivateKey.from_private_bytes(raw)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    (pem_body,) = [line for line in pem.splitlines() if not line.startswith("-----")]
    spellings = [raw.hex(), raw.hex().upper(), pem_body]
    for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        spellings += [encoded.decode(), encoded.decode().rstrip("=")]
    return spellings


def shoot(page, screens: Path, name: str) -> None:
    """`name` at desktop and at phone width, into the test's folder and bench/out/console;
    at phone width, nothing may be wider than the screen (no sideways scrolling)."""
    SHOTS_COPY.mkdir(parents=True, exist_ok=True)
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        if label == "phone":
            wide = page.evaluate("document.documentElement.scrollWidth")
            assert wide <= PHONE["width"], f"{name} is {wide} px wide at {PHONE['width']} px"
        path = screens / f"{name}-{label}.png"
        page.screenshot(path=str(path), full_page=True)
        shutil.copy(path, SHOTS_COPY / path.name)
    page.set_viewport_size(DESKTOP)


def sign_in(page, url: str, password: str = PASSWORD) -> None:
    page.goto(f"{url}/admin/")
    assert page.url.endswith("/admin/login")
    page.fill("#password", password)
    submit(page, "button[type=submit]")
    assert page.url == f"{url}/admin/"


def submit(page, selector: str) -> None:
    """Click a submit button and wait for the page it leads to."""
    with page.expect_navigation():
        page.click(selector)


def post_form(url: str, path: str, fields: dict[str, str], cookie: str | None = None):
    """A plain HTTP form POST (no browser): (status, body)."""
    data = urllib.parse.urlencode(fields).encode()
    request = urllib.request.Request(f"{url}{path}", data=data, method="POST")
    if cookie:
        request.add_header("Cookie", cookie)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


# ----- a healed upgrade and the seller's day -----


@pytest.mark.browser
def test_seller_console_after_a_healed_upgrade(tmp_path, browser_context, screens):
    # A database at the newest schema, made by the real migrator; then the two drifts a
    # release can bring: v9's checksum poisoned (certified idempotent: re-run after a backup)
    # and the newest file checked out with CRLF line ends (cosmetic: re-stamped).
    migrations = copy_migrations(tmp_path)
    latest = kit.latest_version(migrations)
    db = tmp_path / "data" / "keysmith.db"
    kit.apply_range(db, migrations)
    conn = kit.connect(db)
    conn.execute("UPDATE _sqlx_migrations SET checksum = ? WHERE version = 9", (b"\xef" * 48,))
    conn.close()
    drifted = migration_file(migrations, latest)
    drifted.write_bytes(drifted.read_bytes().replace(b"\n", b"\r\n"))

    env = {"KEYSMITH_CONSOLE_PASSWORD": PASSWORD}
    with DaemonProc(tmp_path, db_path=db, migrations_dir=migrations, env=env) as d:
        d.wait_for("serving")
        page = browser_context.new_page()
        html: list[str] = []
        page.on("response", lambda r: html.append(r.text()) if "text/html" in (
            r.headers.get("content-type", "")) else None)  # fmt: skip

        page.goto(f"{d.url}/admin/login")
        shoot(page, screens, "login")
        sign_in(page, d.url)
        assert "ready, schema v" in page.inner_text(".health")

        # Upgrades: both heals with their evidence, and the backup the re-run took first.
        page.goto(f"{d.url}/admin/upgrades")
        heals = page.inner_text("#heals")
        assert "re-ran the migration in one transaction, after a backup" in heals
        assert "re-stamped the checksum; no SQL ran" in heals
        assert "line endings" in heals  # the restamp's evidence
        assert "certified idempotent" in heals  # the re-run's
        boots = page.locator("tr.boot-serving").first.inner_text()
        assert f"healed 9 (rerun), {latest} (restamp)" in boots
        # Each healed migration's row says how it was healed, not just "applied".
        nine = page.inner_text("#migrations tr:nth-child(9)")
        assert "healed" in nine and "re-ran the migration in one transaction" in nine, nine
        backups = page.inner_text("#backups")
        assert f"schema v{latest}" in backups and "KiB" in backups

        # A bad form input: the API's own message next to the field, and nothing written.
        before = full_dump(db)
        page.goto(f"{d.url}/admin/products")
        page.fill("#f-slug", "Not A Slug")
        page.fill("#f-name", "App")
        page.fill("#f-price_sats", "1000")
        submit(page, "form[action='/admin/products'] button[type=submit]")
        status, api = d.request(
            "POST",
            "/v1/admin/products",
            {"slug": "Not A Slug", "name": "App", "price_sats": 1000},
            headers=d.admin_headers(),
        )
        assert status == 400
        assert page.inner_text("#e-slug") == api["message"]
        assert page.input_value("#f-name") == "App"  # the form comes back filled in
        shoot(page, screens, "products-refused")
        assert full_dump(db) == before

        page.fill("#f-slug", "app")
        page.fill("#f-entitlements_catalog", "pro: Pro features")
        submit(page, "form[action='/admin/products'] button[type=submit]")
        assert "Product created." in page.inner_text("main")
        assert "pro: Pro features" in page.inner_text("table")

        page.goto(f"{d.url}/admin/policies")
        page.select_option("#f-product_slug", "app")
        page.fill("#f-slug", "yearly")
        page.fill("#f-name", "Yearly")
        page.fill("#f-duration_days", "365")
        page.fill("#f-max_machines", "2")
        page.fill("#f-entitlements", "pro")
        page.check("#f-is_default")
        submit(page, "form[action='/admin/policies'] button[type=submit]")
        assert "Policy created." in page.inner_text("main")

        # Issue: the key shown once, copied with the copy button.
        page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=d.url)
        page.goto(f"{d.url}/admin/licenses")
        page.select_option("#f-product_slug", "app")
        page.fill("#f-note", "order 1001")
        submit(page, "#issue button[type=submit]")
        key = page.input_value("#issued-key")
        assert key.startswith("LIC1-") or len(key) > 40, key
        page.click("#copy-key")
        page.wait_for_function("document.getElementById('copy-key').textContent === 'Copied'")
        assert page.evaluate("navigator.clipboard.readText()") == key
        shoot(page, screens, "license-issued")
        page.reload()
        assert page.locator("#issued-key").count() == 0  # once, and only once
        assert key not in page.content()

        status, answer = d.request("POST", "/v1/validate", {"key": key})
        assert status == 200 and answer["ok"] is True, answer
        machine = {"key": key, "fingerprint": "fp-laptop", "hostname": "studio-laptop"}
        status, _ = d.request("POST", "/v1/machines/activate", machine)
        assert status == 200

        # The license page: the machine and its deactivation, then revoke.
        page.goto(f"{d.url}/admin/licenses?q=order+1001")
        submit(page, "#licenses a")
        assert page.inner_text("#license-status") == "active"
        assert "Deactivate" in page.inner_text("#machines")
        submit(page, "#machines a.button")
        assert "studio-laptop" in page.inner_text("#confirm")  # asked first
        submit(page, "#confirm-button")
        assert "Machine deactivated" in page.inner_text("main")
        license_url = page.url.split("?")[0]
        page.fill("#f-reason", "chargeback")
        submit(page, "form.revoke button[type=submit]")
        assert "cannot be undone" in page.inner_text("#confirm")  # asked first
        submit(page, "#confirm-button")
        assert page.inner_text("#license-status") == "revoked"
        status, answer = d.request("POST", "/v1/validate", {"key": key})
        assert (status, answer["ok"], answer["reason"]) == (200, False, "revoked"), answer

        # A forged form: no token, a wrong one, or the right one from another site: 403.
        page.goto(f"{d.url}/admin/codes")
        before = full_dump(db)
        token = page.input_value("form[action='/admin/codes'] input[name=csrf]")
        code = {"code": "FORGED", "kind": "percent", "amount": "50"}
        for fields, headers in (
            (code, {}),
            ({**code, "csrf": "x" * 43}, {}),
            ({**code, "csrf": token}, {"Origin": "https://evil.example"}),
        ):
            answer = page.request.post(f"{d.url}/admin/codes", form=fields, headers=headers)
            assert answer.status == 403, fields
            assert "Nothing was changed" in answer.text()
        assert full_dump(db) == before
        page.fill("#f-code", "LAUNCH")
        page.select_option("#f-kind", "percent")
        page.fill("#f-amount", "20")
        submit(page, "form[action='/admin/codes'] button[type=submit]")
        assert "Discount code created." in page.inner_text("main")
        # A fresh form offers a code no one guesses; a short free one is listed as weak.
        assert re.fullmatch(r"[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}", page.input_value("#f-code"))
        page.fill("#f-code", "FREE1")
        page.select_option("#f-kind", "free_license")
        page.fill("#f-amount", "")
        submit(page, "form[action='/admin/codes'] button[type=submit]")
        # (This daemon runs without the wrong-code limit, so any valuable code is weak.)
        assert "code 'FREE1' is valuable" in page.inner_text("main")
        assert "Use a long random code" in page.inner_text("main")

        for name in PAGES:
            page.goto(f"{d.url}/admin/{name}")
            shoot(page, screens, name or "overview")
        page.goto(license_url)
        shoot(page, screens, "license")
        audit = page.goto(f"{d.url}/admin/audit")
        assert audit.status == 200
        assert "license.revoke" in page.inner_text("#audit")

        # Sign out: the cookie no longer opens anything.
        cookie = next(c for c in page.context.cookies() if c["name"] == "keysmith_console")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and not cookie["secure"]
        submit(page, "header .logout button")
        assert page.url == f"{d.url}/admin/login"
        reuse = urllib.request.Request(f"{d.url}/admin/audit")
        reuse.add_header("Cookie", f"keysmith_console={cookie['value']}")
        with urllib.request.urlopen(reuse, timeout=10) as answer:
            assert answer.url.endswith("/admin/login")  # redirected, not served

        # Wrong passwords: paused with a clear message and Retry-After; even the right one
        # waits then.
        for _ in range(5):
            page.fill("#password", "not the password")
            submit(page, "button[type=submit]")
        assert "Too many wrong passwords" in page.inner_text(".error")
        shoot(page, screens, "login-paused")
        answer = page.request.post(f"{d.url}/admin/login", form={"password": PASSWORD})
        assert answer.status == 429 and int(answer.headers["retry-after"]) > 0
        assert "sign-in is paused" in answer.text()

        # No secret reached a page or the log, the issuer's private key in any spelling.
        log = d.log_text()
        secrets = (PASSWORD, d.env["KEYSMITH_ADMIN_API_KEY"], cookie["value"])
        for secret in (*secrets, *issuer_key_spellings(db)):
            assert not any(secret in text for text in html)
            assert secret not in log
        assert sum(key in text for text in html) == 1  # the one page that issued it


# ----- webhooks and API keys -----


@pytest.mark.browser
def test_webhooks_and_api_keys_from_the_console(tmp_path, browser_context, screens):
    env = {
        "KEYSMITH_CONSOLE_PASSWORD": PASSWORD,
        "KEYSMITH_WEBHOOK_BACKOFF": "0.2",
        **ALLOW_LOOPBACK,
    }
    with Receiver() as receiver, DaemonProc(tmp_path, env=env) as d:
        d.wait_for("serving")
        page = browser_context.new_page()
        html: list[str] = []
        page.on("response", lambda r: html.append(r.text()) if "text/html" in (
            r.headers.get("content-type", "")) else None)  # fmt: skip
        sign_in(page, d.url)
        page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=d.url)
        new_endpoint = "#new-endpoint button[type=submit]"

        # A bad URL: the API's own message next to the field, and nothing written.
        before = full_dump(d.db_path)
        page.goto(f"{d.url}/admin/webhooks")
        page.fill("#f-url", "ftp://crm.example.com/hook")
        page.check("input[name='event-license.issued']")
        submit(page, new_endpoint)
        body = {"url": "ftp://crm.example.com/hook", "event_types": ["license.issued"]}
        status, api = d.request(
            "POST", "/v1/admin/webhook-endpoints", body, headers=d.admin_headers()
        )
        assert status == 400
        assert page.inner_text("#e-url") == api["message"]
        assert page.is_checked("input[name='event-license.issued']")  # filled in again
        assert full_dump(d.db_path) == before

        # The endpoint: its secret shown once, copied with the copy button.
        page.fill("#f-url", receiver.url)
        page.fill("#f-description", "CRM")
        submit(page, new_endpoint)
        secret = page.input_value("#created-secret")
        assert len(secret) >= 32
        page.click("#copy-secret")
        page.wait_for_function("document.getElementById('copy-secret').textContent === 'Copied'")
        assert page.evaluate("navigator.clipboard.readText()") == secret
        shoot(page, screens, "webhook-created")
        listed = page.inner_text("#endpoints")
        assert receiver.url in listed and "license.issued" in listed
        assert secret not in listed and f"{secret[:4]}…" in listed  # its first characters only
        # Keysat's wildcard is offered first: every event, also those of a later version.
        assert page.inner_text("label[for='f-event-1']") == "* (every event)"

        # A license issued: its event is delivered, signed with that secret, and listed.
        issue(d, make_product(d))
        for _ in range(100):
            page.goto(f"{d.url}/admin/webhooks")
            if page.locator("#deliveries tr.delivery-delivered").count():
                break
            page.wait_for_timeout(100)
        delivered = page.inner_text("#deliveries tr.delivery-delivered")
        assert "license.issued" in delivered and "HTTP 200" in delivered
        assert receiver.seen[0].signed_by(secret)
        assert page.locator("#created-secret").count() == 0  # once, and only once
        shoot(page, screens, "webhooks")

        # Disabled here: the API lists it inactive (Keysat's `active`); enabled again.
        for label, state, active in (("Disable", "disabled", False), ("Enable", "enabled", True)):
            submit(page, f"#endpoints button:text-is('{label}')")
            assert page.inner_text("#endpoints td[data-label='State']") == state
            found = d.request("GET", "/v1/admin/webhook-endpoints", headers=d.admin_headers())
            assert [e["active"] for e in must(found, 200)["endpoints"]] == [active]

        # An API key. Keysat's roles are explained next to the choice.
        page.goto(f"{d.url}/admin/api-keys")
        grants = page.inner_text("#role-grants")
        assert "license-issuer: reads everything; changes licenses:write" in grants
        assert "support: reads everything; changes licenses:write, machines:write" in grants
        # An earlier spelling of a scope: the API's own message next to the field, and nothing
        # written.
        before = full_dump(d.db_path)
        page.fill("#f-label", "shop")
        page.fill("#f-scopes", "discount-codes:read")
        submit(page, "#new-key button[type=submit]")
        body = {"label": "shop", "role": "read-only", "scopes": ["discount-codes:read"]}
        status, api = d.request("POST", "/v1/admin/api-keys", body, headers=d.admin_headers())
        assert status == 400 and "discount_codes:read" in api["message"]
        assert page.inner_text("#e-scopes") == api["message"]
        assert full_dump(d.db_path) == before
        # The token shown once; it works until revoked here.
        page.fill("#f-scopes", "")
        page.select_option("#f-role", "read-only")
        submit(page, "#new-key button[type=submit]")
        token = page.input_value("#created-token")
        page.click("#copy-token")
        page.wait_for_function("document.getElementById('copy-token').textContent === 'Copied'")
        assert page.evaluate("navigator.clipboard.readText()") == token
        shoot(page, screens, "api-key-created")
        bearer = {"Authorization": f"Bearer {token}"}
        must(d.request("GET", "/v1/admin/products", headers=bearer), 200)
        page.goto(f"{d.url}/admin/api-keys")
        assert page.locator("#created-token").count() == 0
        submit(page, "#keys a:text('Revoke…')")
        assert "API key 'shop' (read-only)" in page.inner_text("#confirm")  # asked first
        must(d.request("GET", "/v1/admin/products", headers=bearer), 200)
        submit(page, "#confirm-button")
        assert "API key revoked" in page.inner_text("main")
        assert "revoked" in page.inner_text("#keys")
        shoot(page, screens, "api-keys")
        status, _ = d.request("GET", "/v1/admin/products", headers=bearer)
        assert status in (401, 403)

        log = d.log_text()
        for shown_once in (secret, token):
            assert sum(shown_once in text for text in html) == 1  # the page that created it
            assert shown_once not in log


# ----- a blocked upgrade -----


@pytest.mark.browser
def test_upgrades_page_explains_a_blocked_upgrade(tmp_path, browser_context, screens):
    # A release edited an applied migration (not cosmetic, not re-runnable): the daemon stays
    # up in safe mode, and the console says what the health check says, with the diff.
    migrations = copy_migrations(tmp_path)
    latest = kit.latest_version(migrations)
    db = tmp_path / "data" / "keysmith.db"
    kit.apply_range(db, migrations)
    edited = migration_file(migrations, latest)
    edited.write_text(edited.read_text() + "\nCREATE TABLE release_note (x INTEGER);\n")
    before = full_dump(db)

    env = {"KEYSMITH_CONSOLE_PASSWORD": PASSWORD}
    with DaemonProc(tmp_path, db_path=db, migrations_dir=migrations, env=env) as d:
        record = d.wait_for("blocked")
        page = browser_context.new_page()
        sign_in(page, d.url)
        assert "safe mode" in page.inner_text(".banner")
        page.goto(f"{d.url}/admin/upgrades")
        code, _out, health_err = d.health()
        assert code == 1
        shown = page.inner_text("#explanation")
        assert shown == safe_mode_message(record) == health_err.strip()
        blocked = page.inner_text("tr.action-blocked")
        assert "modified" in blocked and "blocked" in blocked
        assert "+CREATE TABLE release_note (x INTEGER);" in page.inner_text("pre.diff")
        assert "blocked: " in page.locator("tr.boot-blocked").first.inner_text()
        # The remedy once, in "Now" (it was in Now twice, in the boot's row and the finding's).
        remedy = record["cause"]["blockers"][0]["remedy"]
        assert page.inner_text("main").count(remedy) == 1
        shoot(page, screens, "upgrades-blocked")
        page.goto(f"{d.url}/admin/licenses")
        assert "Licensing is paused" in page.inner_text("main")
    assert full_dump(db) == before


# ----- no password: a closed door, and the action that opens it -----


def test_without_a_password_the_console_only_explains_how_to_set_one(tmp_path):
    with DaemonProc(tmp_path) as d:
        d.wait_for("serving")
        for method, path in (("GET", "/admin/"), ("GET", "/admin/login"), ("POST", "/admin/login")):
            status, body = d.request(method, path)
            assert status == 403, path
            assert "Set console password" in body and "Sign in" not in body

        def action(text: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "daemon", "action", "set-console-password", text],
                env=d.env, capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip

        before = full_dump(d.db_path)
        short = action('{"password": "short"}')
        assert short.returncode == 1 and "'password' (Password)" in short.stderr
        assert full_dump(d.db_path) == before
        done = action(f'{{"password": "{PASSWORD}"}}')
        assert done.returncode == 0, done.stderr
        conn = sqlite3.connect(d.db_path)
        (stored,) = conn.execute(
            "SELECT value FROM settings WHERE key = 'console_password_argon2id'"
        ).fetchone()
        (audited,) = conn.execute(
            "SELECT count(*) FROM audit_log WHERE action = 'console_password.set'"
        ).fetchone()
        conn.close()
        assert stored.startswith("$argon2id$") and PASSWORD not in stored
        assert audited == 1

        # The running daemon takes it at once: the wrong password is refused, the right one
        # opens a session, and setting a new password ends that session.
        status, body = post_form(d.url, "/admin/login", {"password": "wrong password!"})
        assert status == 401 and "not the console password" in body
        opener = urllib.request.build_opener(NoRedirect)
        answer = opener.open(
            urllib.request.Request(
                f"{d.url}/admin/login",
                data=urllib.parse.urlencode({"password": PASSWORD}).encode(),
            ),
            timeout=10,
        )
        assert answer.status == 303
        cookie = answer.headers["Set-Cookie"].split(";", 1)[0]
        assert opener.open(_with_cookie(f"{d.url}/admin/", cookie), timeout=10).status == 200
        assert action(f'{{"password": "{PASSWORD} again"}}').returncode == 0
        answer = opener.open(_with_cookie(f"{d.url}/admin/", cookie), timeout=10)
        assert answer.status == 303 and answer.headers["Location"] == "/admin/login"
        assert PASSWORD not in d.log_text()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None

    def http_error_303(self, req, fp, code, msg, headers):
        return fp


def _with_cookie(url: str, cookie: str) -> urllib.request.Request:
    request = urllib.request.Request(url)
    request.add_header("Cookie", cookie)
    return request


# ----- a seller's day -----


@pytest.mark.browser
def test_a_sellers_day_in_the_console(tmp_path, browser_context, screens):
    # Sign in, a product and a 30-day policy with 7 days' grace, a license sold to a buyer
    # found again by that email, a price change, suspend, unsuspend, revoke (asked first), a
    # 12.5 % code created and disabled, then machines, revenue and who did what.
    env = {"KEYSMITH_CONSOLE_PASSWORD": PASSWORD}
    with DaemonProc(tmp_path, env=env) as d:
        d.wait_for("serving")
        page = browser_context.new_page()
        sign_in(page, d.url)
        shoot(page, screens, "day-overview")

        page.goto(f"{d.url}/admin/products")
        page.fill("#f-slug", "studio")
        page.fill("#f-name", "Studio")
        page.fill("#f-price_sats", "50000")
        submit(page, "form[action='/admin/products'] button[type=submit]")
        assert "Product created." in page.inner_text("main")

        page.goto(f"{d.url}/admin/policies")
        page.select_option("#f-product_slug", "studio")
        page.fill("#f-slug", "monthly")
        page.fill("#f-name", "Monthly")
        page.fill("#f-duration_days", "30")
        page.fill("#f-grace_days", "7")
        page.fill("#f-max_machines", "2")
        page.check("#f-is_default")
        submit(page, "#new-policy button[type=submit]")
        row = page.inner_text("#policies tbody tr")
        assert "30 days" in row and "7 days" in row and "50000 sats" in row, row
        shoot(page, screens, "day-policies")

        page.goto(f"{d.url}/admin/licenses")
        page.select_option("#f-product_slug", "studio")
        page.select_option("#f-policy_slug", "monthly")
        page.fill("#f-buyer_email", "ann@example.com")
        submit(page, "#issue button[type=submit]")
        key = page.input_value("#issued-key")
        page.fill("#q", "ann@example.com")
        submit(page, ".search button[type=submit]")
        assert "ann@example.com" in page.inner_text("#licenses")
        assert "Licenses 1–1 of 1" in page.inner_text(".pager")
        shoot(page, screens, "day-licenses")
        submit(page, "#licenses a")
        license_url = page.url.split("?")[0]
        facts = page.inner_text("#facts")
        assert "ann@example.com" in facts and "7.0 days after expiry" in facts, facts

        # The policy's price, edited: the list says the new one.
        page.goto(f"{d.url}/admin/policies")
        submit(page, "#policies a:text('Edit')")
        assert page.input_value("#f-grace_days") == "7"
        page.fill("#f-price_sats", "42000")
        shoot(page, screens, "day-policy-edit")
        submit(page, "#edit button[type=submit]")
        assert "Policy saved" in page.inner_text("main")
        assert "42000 sats" in page.inner_text("#policies")

        page.goto(license_url)
        for label, status in (("Suspend", "suspended"), ("Unsuspend", "active")):
            submit(page, f"button:text-is('{label}')")
            assert page.inner_text("#license-status") == status
        page.fill("#f-reason", "refund")
        submit(page, "form.revoke button[type=submit]")
        assert "license " in page.inner_text("#confirm") and "cannot be undone" in page.inner_text(
            "#confirm"
        )
        shoot(page, screens, "day-revoke-confirm")
        assert must(d.request("POST", "/v1/validate", {"key": key}), 200)["ok"] is True
        submit(page, "#confirm-button")
        assert page.inner_text("#license-status") == "revoked"
        shoot(page, screens, "day-license")

        page.goto(f"{d.url}/admin/codes")
        page.fill("#f-code", "SPRING-SALE")
        page.select_option("#f-kind", "percent")
        page.fill("#f-amount", "12.5")
        submit(page, "form[action='/admin/codes'] button[type=submit]")
        assert "12.5 %" in page.inner_text("#codes")
        submit(page, "#codes a:text('Disable…')")
        assert "SPRING-SALE" in page.inner_text("#confirm")
        submit(page, "#confirm-button")
        assert "disabled" in page.inner_text("#codes")
        shoot(page, screens, "day-codes")

        # A machine on another license; the machines page, by product.
        other = issue(d, "studio")
        machine = {"key": other["license_key"], "fingerprint": "fp-1", "hostname": "ann-mac"}
        must(d.request("POST", "/v1/machines/activate", machine), 200)
        page.goto(f"{d.url}/admin/machines")
        page.select_option("#product", label="studio")
        submit(page, "#machine-filter button[type=submit]")
        assert "ann-mac" in page.inner_text("#machine-list")
        assert page.inner_text("p.pager").startswith("Machines 1–1 of 1")
        shoot(page, screens, "day-machines")

        page.goto(f"{d.url}/admin/revenue")
        assert "Total" in page.inner_text("#revenue-summary")
        shoot(page, screens, "day-revenue")

        page.goto(f"{d.url}/admin/audit")
        page.select_option("#actor", "console")
        submit(page, "#audit-filter button[type=submit]")
        trail = page.inner_text("#audit")
        assert "license.revoke" in trail and "the console" in trail
        assert "the master admin key" not in trail  # the other license was issued by the API
        counted = re.match(r"Entries 1–(\d+) of (\d+)", page.inner_text("p.pager"))
        assert counted is not None and counted[1] == counted[2] == str(trail.count("console"))
        shoot(page, screens, "day-audit")
