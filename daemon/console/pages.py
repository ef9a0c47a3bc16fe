"""The console's routes: sign-in, the pages, and the forms that change something.

Every page is rendered on the server (Jinja2, autoescaped) and served with a strict
Content-Security-Policy; the only script is the copy button's, served from here. Every POST
except the sign-in needs the session's CSRF token; every POST must come from this origin.
No secret (the admin key, the issuer key, the password, the session token) is ever put into a
page or a log line; a license key is shown once, in the answer to the form that issued it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from aiohttp import web

from daemon import __version__, metrics
from daemon.console import PREFIX, auth, history, ops, password
from daemon.settings import Settings
from daemon.status import Lifecycle

if TYPE_CHECKING:
    from daemon.licensing.service import Licensing

log = logging.getLogger("keysmith.console")

HERE = Path(__file__).resolve().parent
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript"}
NAV = (
    ("overview", "Overview", f"{PREFIX}/"),
    ("upgrades", "Upgrades", f"{PREFIX}/upgrades"),
    ("products", "Products", f"{PREFIX}/products"),
    ("policies", "Policies", f"{PREFIX}/policies"),
    ("licenses", "Licenses", f"{PREFIX}/licenses"),
    ("codes", "Discount codes", f"{PREFIX}/codes"),
    ("audit", "Audit log", f"{PREFIX}/audit"),
)
# Messages after a change, by the `done` query value of the redirect that follows it.
DONE = {
    "product": "Product created.",
    "policy": "Policy created.",
    "revoke": "License revoked: it no longer validates anywhere.",
    "suspend": "License suspended: it does not validate until you unsuspend it.",
    "unsuspend": "License unsuspended: it validates again.",
    "deactivate": "Machine deactivated: its seat is free again.",
    "code": "Discount code created.",
    "disable": "Discount code disabled: it can no longer be redeemed.",
}
# argon2id takes 64 MiB per check: at most this many run at once, whatever the traffic.
VERIFY_SLOTS = 2


@dataclass
class Console:
    settings: Settings
    lifecycle: Lifecycle
    licensing: Licensing | None  # None in safe mode, which opens no licensing service
    templates: jinja2.Environment
    static: dict[str, bytes]
    sessions: auth.Sessions = field(default_factory=auth.Sessions)
    limiter: auth.SignInLimiter = field(default_factory=auth.SignInLimiter)
    verify_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(VERIFY_SLOTS))
    _env_hash: str | None = None

    async def password_hash(self) -> str | None:
        """The hash to check sign-ins against: of KEYSMITH_CONSOLE_PASSWORD when it is set
        (hashed once, kept in memory), else the one the action stored in the database."""
        if self.settings.console_password is not None:
            if self._env_hash is None:
                self._env_hash = await asyncio.to_thread(
                    password.hash_password, self.settings.console_password
                )
            return self._env_hash
        try:
            return await asyncio.to_thread(password.read_hash, self.settings.db_path)
        except sqlite3.Error as e:
            raise PasswordUnreadable(self.settings.db_path, e) from None


class PasswordUnreadable(Exception):
    """The database could not be read for the console password: nobody can sign in."""

    def __init__(self, db_path: Path, error: sqlite3.Error) -> None:
        super().__init__(
            f"The console cannot read its password from the database {db_path} ({error}), so "
            "nobody can sign in; nothing was changed. The service's health check says whether "
            "the database itself is healthy; to use the console meanwhile, start Keysmith with "
            "KEYSMITH_CONSOLE_PASSWORD set."
        )


CONSOLE_KEY = web.AppKey("console", Console)
Page = Callable[[web.Request, auth.Session, dict[str, str]], Awaitable[web.StreamResponse]]


def add_console_routes(
    app: web.Application, lifecycle: Lifecycle, licensing: Licensing | None, settings: Settings
) -> None:
    templates = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    templates.filters["size"] = history.size
    static = {p.name: p.read_bytes() for p in (HERE / "static").iterdir() if p.is_file()}
    app[CONSOLE_KEY] = Console(settings, lifecycle, licensing, templates, static)
    add = app.router.add_route
    add("GET", PREFIX, _to_overview)
    add("GET", f"{PREFIX}/static/{{name}}", _static)
    add("GET", f"{PREFIX}/login", login_page)
    add("POST", f"{PREFIX}/login", login)
    add("POST", f"{PREFIX}/logout", _signed_in(logout))
    add("GET", f"{PREFIX}/", _signed_in(overview))
    add("GET", f"{PREFIX}/upgrades", _signed_in(upgrades))
    for method, path, page in SELLER_ROUTES:
        add(method, f"{PREFIX}{path}", _signed_in(_serving(page)))


# ----- rendering -----


def render(
    request: web.Request,
    template: str,
    *,
    status: int = 200,
    session: auth.Session | None = None,
    **context: Any,
) -> web.Response:
    console = request.app[CONSOLE_KEY]
    record = console.lifecycle.snapshot()
    body = console.templates.get_template(template).render(
        nav=NAV,
        prefix=PREFIX,
        csrf=session.csrf if session else "",
        signed_in=session is not None,
        health=history.health_text(record),
        state=record["state"],
        safe_mode=record["safe_mode"],
        version=__version__,
        **context,
    )
    response = web.Response(text=body, status=status, content_type="text/html", charset="utf-8")
    response.headers.update(SECURITY_HEADERS)
    return response


def _see(location: str) -> web.Response:
    response = web.Response(status=303, headers={"Location": location})
    response.headers.update(SECURITY_HEADERS)
    return response


async def _to_overview(request: web.Request) -> web.StreamResponse:
    return _see(f"{PREFIX}/")


async def _static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    data = request.app[CONSOLE_KEY].static.get(name)
    if data is None:
        raise web.HTTPNotFound()
    response = web.Response(body=data, content_type=STATIC_TYPES[Path(name).suffix])
    response.headers.update(SECURITY_HEADERS)
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


# ----- who may do what -----


def _same_origin(request: web.Request) -> bool:
    """A browser names the site that sent a POST in Origin; it must be this console's. (The
    Referrer-Policy is same-origin: "no-referrer" would make browsers send "null" here.)"""
    origin = request.headers.get("Origin")
    if origin is None:  # not a browser, or a very old one: the CSRF token still decides
        return True
    console = request.app[CONSOLE_KEY]
    scheme = "https" if auth.over_tls(request, console.settings.trusted_proxies) else "http"
    return origin == f"{scheme}://{request.host}"


def _refused(request: web.Request, session: auth.Session | None) -> web.Response:
    log.warning(
        "console form refused: missing or wrong CSRF token, or another origin",
        extra={"path": request.path},
    )
    return render(
        request,
        "refused.html",
        status=403,
        session=session,
        title="Refused",
        message="This form was refused: it did not carry this console's security token, or it "
        "came from another site. Nothing was changed. Reload the page and try again.",
    )


def _signed_in(page: Page) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Only with a live session; a POST also needs this origin and the session's CSRF token.
    Without a password set, only the page that explains how to set one."""

    @functools.wraps(page)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        console = request.app[CONSOLE_KEY]
        try:
            stored = await console.password_hash()
        except PasswordUnreadable as e:
            return _unreadable(request, e)
        if stored is None:
            return render(request, "setup.html", status=403, title="Set a console password")
        session = console.sessions.find(request.cookies.get(auth.COOKIE), auth.fingerprint(stored))
        if session is None:
            if request.method == "POST":
                return _refused(request, None)
            return _see(f"{PREFIX}/login")
        form: dict[str, str] = {}
        if request.method == "POST":
            posted = await request.post()
            form = {k: v for k, v in posted.items() if isinstance(v, str)}
            if not _same_origin(request) or not auth.csrf_ok(session, form.pop("csrf", None)):
                return _refused(request, session)
        return await page(request, session, form)

    return wrapped


def _serving(page: Page) -> Page:
    """The seller's pages need the licensing service, which safe mode does not open."""

    @functools.wraps(page)
    async def wrapped(
        request: web.Request, session: auth.Session, form: dict[str, str]
    ) -> web.StreamResponse:
        if request.app[CONSOLE_KEY].licensing is None:
            return render(request, "paused.html", status=503, session=session, title="Paused")
        return await page(request, session, form)

    return wrapped


# ----- sign in and out -----


async def login_page(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE_KEY]
    try:
        stored = await console.password_hash()
    except PasswordUnreadable as e:
        return _unreadable(request, e)
    if stored is None:
        return render(request, "setup.html", status=403, title="Set a console password")
    return render(request, "login.html", title="Sign in", error=None)


def _unreadable(request: web.Request, error: PasswordUnreadable) -> web.Response:
    log.error(str(error))
    return render(
        request, "refused.html", status=503, title="Console unavailable", message=str(error)
    )


async def login(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE_KEY]
    try:
        stored = await console.password_hash()
    except PasswordUnreadable as e:
        return _unreadable(request, e)
    if stored is None:
        return render(request, "setup.html", status=403, title="Set a console password")
    if not _same_origin(request):
        return _refused(request, None)
    address = auth.client_address(request, console.settings.trusted_proxies)
    wait = console.limiter.retry_after(address)
    if wait is not None:
        return _too_many(request, wait)
    posted = await request.post()
    given = posted.get("password")
    async with console.verify_slots:
        matches = isinstance(given, str) and await asyncio.to_thread(password.verify, stored, given)
    if not matches:
        console.limiter.failed(address)
        log.warning("console sign-in failed: wrong password", extra={"client": address})
        wait = console.limiter.retry_after(address)
        if wait is not None:
            return _too_many(request, wait)
        return render(
            request,
            "login.html",
            status=401,
            title="Sign in",
            error="That password is not the console password. Nothing was changed.",
        )
    console.limiter.succeeded(address)
    token = console.sessions.open(auth.fingerprint(stored))
    log.info("console sign-in", extra={"client": address})
    response = _see(f"{PREFIX}/")
    response.set_cookie(
        auth.COOKIE,
        token,
        path=PREFIX,
        httponly=True,
        samesite="Strict",
        secure=auth.over_tls(request, console.settings.trusted_proxies),
        max_age=auth.ABSOLUTE_SECONDS,
    )
    return response


def _too_many(request: web.Request, wait: int) -> web.Response:
    response = render(
        request,
        "login.html",
        status=429,
        title="Sign in",
        error=f"Too many wrong passwords: sign-in is paused for {wait} seconds. Nothing was "
        "changed. Wait, then try again; if you forgot the password, set a new one with the "
        "action 'Set console password'.",
    )
    response.headers["Retry-After"] = str(wait)
    return response


async def logout(
    request: web.Request, session: auth.Session, form: dict[str, str]
) -> web.StreamResponse:
    console = request.app[CONSOLE_KEY]
    console.sessions.close(request.cookies.get(auth.COOKIE))
    response = _see(f"{PREFIX}/login")
    response.del_cookie(auth.COOKIE, path=PREFIX)
    return response


# ----- overview and upgrades -----


async def overview(
    request: web.Request, session: auth.Session, form: dict[str, str]
) -> web.StreamResponse:
    console = request.app[CONSOLE_KEY]
    record = console.lifecycle.snapshot()
    counts = None
    if console.licensing is not None:
        counts = await asyncio.to_thread(ops.counts, console.settings.db_path)
    boots = await asyncio.to_thread(history.boots, console.settings)
    return render(
        request,
        "overview.html",
        session=session,
        title="Overview",
        page="overview",
        record=record,
        explanation=history.blocked_explanation(record),
        last_boot=boots[0] if boots else None,
        counts=counts,
        validations_today=metrics.validations_today(),
    )


async def upgrades(
    request: web.Request, session: auth.Session, form: dict[str, str]
) -> web.StreamResponse:
    console = request.app[CONSOLE_KEY]
    record = console.lifecycle.snapshot()
    return render(
        request,
        "upgrades.html",
        session=session,
        title="Upgrades",
        page="upgrades",
        record=record,
        explanation=history.blocked_explanation(record),
        view=await asyncio.to_thread(history.upgrades, console.settings),
        heal_actions=history.HEAL_ACTIONS,
    )


# ----- the seller's pages -----


def _service(request: web.Request) -> Licensing:
    service = request.app[CONSOLE_KEY].licensing
    assert service is not None  # the seller's pages are wrapped in _serving
    return service


def _done(request: web.Request) -> str | None:
    return DONE.get(request.query.get("done", ""))


async def products(
    request: web.Request,
    session: auth.Session,
    form: dict[str, str],
    refused: ops.Refused | None = None,
) -> web.StreamResponse:
    return render(
        request,
        "products.html",
        status=refused.status if refused else 200,
        session=session,
        title="Products",
        page="products",
        products=await ops.products(_service(request)),
        done=_done(request),
        **_form_state(form, refused),
    )


async def create_product(
    request: web.Request, session: auth.Session, form: dict[str, str]
) -> web.StreamResponse:
    try:
        await ops.create_product(_service(request), form)
    except ops.Refused as refused:
        return await products(request, session, form, refused)
    return _see(f"{PREFIX}/products?done=product")


async def policies(
    request: web.Request,
    session: auth.Session,
    form: dict[str, str],
    refused: ops.Refused | None = None,
) -> web.StreamResponse:
    service = _service(request)
    return render(
        request,
        "policies.html",
        status=refused.status if refused else 200,
        session=session,
        title="Policies",
        page="policies",
        policies=await ops.policies(service),
        products={p["id"]: p["slug"] for p in await ops.products(service)},
        done=_done(request),
        **_form_state(form, refused),
    )


async def create_policy(
    request: web.Request, session: auth.Session, form: dict[str, str]
) -> web.StreamResponse:
    try:
        await ops.create_policy(_service(request), form)
    except ops.Refused as refused:
        return await policies(request, session, form, refused)
    return _see(f"{PREFIX}/policies?done=policy")


async def licenses(
    request: web.Request,
    session: auth.Session,
    form: dict[str, str],
    refused: ops.Refused | None = None,
) -> web.StreamResponse:
    # A key just issued is in the session until this page shows it, once.
    issued, session.issued = session.issued, None
    found: list[dict[str, Any]] = []
    search_error = None
    try:
        found = await ops.licenses(_service(request), request.query)
    except ops.Refused as e:
        search_error = e.message
    offset = request.query.get("offset", "0")
    more = None
    if len(found) == ops.LICENSE_PAGE and offset.isdigit():
        more = request.rel_url.update_query(offset=int(offset) + ops.LICENSE_PAGE)
    return render(
        request,
        "licenses.html",
        status=refused.status if refused else 200,
        session=session,
        title="Licenses",
        page="licenses",
        licenses=found,
        more=more,
        search=request.query.get("q", ""),
        status_filter=request.query.get("status", ""),
        statuses=ops.STATUSES,
        search_error=search_error,
        issued=issued,
        **_form_state(form, refused),
    )


async def issue_license(
    request: web.Request, session: auth.Session, form: dict[str, str]
) -> web.StreamResponse:
    try:
        session.issued = await ops.issue_license(_service(request), form)
    except ops.Refused as refused:
        return await licenses(request, session, form, refused)
    # Redirected, so reloading the page shows the list and never issues a second license.
    return _see(f"{PREFIX}/licenses")


async def license_detail(
    request: web.Request,
    session: auth.Session,
    form: dict[str, str],
    refused: ops.Refused | None = None,
) -> web.StreamResponse:
    try:
        found, machines = await ops.license_with_machines(
            _service(request), request.match_info["id"]
        )
    except ops.Refused as e:
        return render(
            request,
            "refused.html",
            status=e.status,
            session=session,
            title="Not found",
            message=e.message,
        )
    return render(
        request,
        "license.html",
        status=refused.status if refused else 200,
        session=session,
        title="License",
        page="licenses",
        license=found,
        machines=machines,
        done=_done(request),
        **_form_state(form, refused),
    )


def _license_change(
    change: Callable[[Any, str, dict[str, str]], Awaitable[Any]], done: str
) -> Page:
    async def handler(
        request: web.Request, session: auth.Session, form: dict[str, str]
    ) -> web.StreamResponse:
        license_id = request.match_info["id"]
        try:
            await change(_service(request), license_id, form)
        except ops.Refused as refused:
            return await license_detail(request, session, form, refused)
        return _see(f"{PREFIX}/licenses/{license_id}?done={done}")

    return handler


async def deactivate_machine(
    request: web.Request, session: auth.Session, form: dict[str, str]
) -> web.StreamResponse:
    try:
        license_id = await ops.deactivate_machine(_service(request), request.match_info["id"], form)
    except ops.Refused as e:
        return render(
            request,
            "refused.html",
            status=e.status,
            session=session,
            title="Refused",
            message=e.message,
        )
    return _see(f"{PREFIX}/licenses/{license_id}?done=deactivate")


async def codes(
    request: web.Request,
    session: auth.Session,
    form: dict[str, str],
    refused: ops.Refused | None = None,
) -> web.StreamResponse:
    return render(
        request,
        "codes.html",
        status=refused.status if refused else 200,
        session=session,
        title="Discount codes",
        page="codes",
        codes=await ops.codes(_service(request)),
        kinds=ops.KINDS,
        done=_done(request),
        **_form_state(form, refused),
    )


async def create_code(
    request: web.Request, session: auth.Session, form: dict[str, str]
) -> web.StreamResponse:
    try:
        await ops.create_code(_service(request), form)
    except ops.Refused as refused:
        return await codes(request, session, form, refused)
    return _see(f"{PREFIX}/codes?done=code")


async def disable_code(
    request: web.Request, session: auth.Session, form: dict[str, str]
) -> web.StreamResponse:
    try:
        await ops.disable_code(_service(request), request.match_info["id"])
    except ops.Refused as refused:
        return await codes(request, session, {}, refused)
    return _see(f"{PREFIX}/codes?done=disable")


async def audit(
    request: web.Request, session: auth.Session, form: dict[str, str]
) -> web.StreamResponse:
    before = request.query.get("before", "")
    before_id = int(before) if before.isdigit() and 0 < int(before) < 2**62 else None
    entries = await ops.audit(_service(request), before_id)
    return render(
        request,
        "audit.html",
        session=session,
        title="Audit log",
        page="audit",
        entries=entries,
        older=entries[-1]["id"] if len(entries) == ops.AUDIT_PAGE else None,
    )


def _form_state(form: dict[str, str], refused: ops.Refused | None) -> dict[str, Any]:
    """What a page needs to show a refused form again: the values, and the message next to
    its field (or above the form when it is about the form as a whole)."""
    return {
        "values": form,
        "errors": {refused.field: refused.message} if refused and refused.field else {},
        "form_error": refused.message if refused and not refused.field else None,
    }


SELLER_ROUTES: tuple[tuple[str, str, Page], ...] = (
    ("GET", "/products", products),
    ("POST", "/products", create_product),
    ("GET", "/policies", policies),
    ("POST", "/policies", create_policy),
    ("GET", "/licenses", licenses),
    ("POST", "/licenses", issue_license),
    ("GET", "/licenses/{id}", license_detail),
    ("POST", "/licenses/{id}/revoke", _license_change(ops.revoke, "revoke")),
    ("POST", "/licenses/{id}/suspend", _license_change(ops.suspend, "suspend")),
    ("POST", "/licenses/{id}/unsuspend", _license_change(ops.unsuspend, "unsuspend")),
    ("POST", "/machines/{id}/deactivate", deactivate_machine),
    ("GET", "/codes", codes),
    ("POST", "/codes", create_code),
    ("POST", "/codes/{id}/disable", disable_code),
    ("GET", "/audit", audit),
)
