"""What every console page shares: the console's state on the app, rendering with the security
headers, and redirects.

Every page is rendered on the server (Jinja2, autoescaped, StrictUndefined) and served with a
strict Content-Security-Policy; the only script is the copy button's, served by the daemon. No
secret (the admin key, the issuer key, the password, the session token) is ever put into a page.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import jinja2
from aiohttp import web

from daemon import __version__
from daemon.console import PREFIX, auth, history, password
from daemon.console.ops import Refused
from daemon.settings import Settings
from daemon.status import Lifecycle

if TYPE_CHECKING:
    from daemon.licensing.service import Licensing

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
NAV = (
    ("overview", "Overview", f"{PREFIX}/"),
    ("upgrades", "Upgrades", f"{PREFIX}/upgrades"),
    ("products", "Products", f"{PREFIX}/products"),
    ("policies", "Policies", f"{PREFIX}/policies"),
    ("licenses", "Licenses", f"{PREFIX}/licenses"),
    ("machines", "Machines", f"{PREFIX}/machines"),
    ("codes", "Discount codes", f"{PREFIX}/codes"),
    ("revenue", "Revenue", f"{PREFIX}/revenue"),
    ("webhooks", "Webhooks", f"{PREFIX}/webhooks"),
    ("api-keys", "API keys", f"{PREFIX}/api-keys"),
    ("audit", "Audit log", f"{PREFIX}/audit"),
)
# argon2id takes 64 MiB per check: at most this many run at once, whatever the traffic.
VERIFY_SLOTS = 2

T = TypeVar("T")


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
# A page with a form on it, which can show the form again as it was refused.
ListPage = Callable[
    [web.Request, auth.Session, dict[str, str], Refused | None], Awaitable[web.StreamResponse]
]


def licensing_of(request: web.Request) -> Licensing:
    """The licensing service, for pages that are mounted only while serving."""
    service = request.app[CONSOLE_KEY].licensing
    assert service is not None  # those pages are wrapped in `serving`
    return service


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


def see(location: str) -> web.Response:
    response = web.Response(status=303, headers={"Location": location})
    response.headers.update(SECURITY_HEADERS)
    return response


# ----- forms -----


def render_form_page(
    request: web.Request,
    template: str,
    session: auth.Session,
    form: dict[str, str],
    refused: Refused | None,
    *,
    posted: bool | None = None,
    **context: Any,
) -> web.Response:
    """A page with a form on it. Refused, it answers the refusal's status and shows the form
    again: the values sent, and each message next to its field (or above the form when it is
    about the form as a whole). A refused row button (nothing `posted` in the form) has its
    message at the top of the page."""
    general = refused.message if refused and not refused.errors else None
    posted = bool(form) if posted is None else posted
    return render(
        request,
        template,
        status=refused.status if refused else 200,
        session=session,
        values=form,
        errors=refused.errors if refused else {},
        form_error=general if posted else None,
        row_error=None if posted else general,
        **context,
    )


def create_form(
    create: Callable[[Licensing, dict[str, str]], Awaitable[dict[str, Any]]],
    page: ListPage,
    then: str,
    *,
    show_once: auth.ShownOnce | None = None,
) -> Page:
    """A page's create form: the change, then a redirect to `then` (so a reload never makes a
    second one); refused, the page again with the form filled in and the message by its field.
    With `show_once`, what was created waits in the session for the page to show it once."""

    async def handler(
        request: web.Request, session: auth.Session, form: dict[str, str]
    ) -> web.StreamResponse:
        try:
            created = await create(licensing_of(request), form)
        except Refused as refused:
            return await page(request, session, form, refused)
        if show_once is not None:
            session.shown_once[show_once] = created
        return see(f"{PREFIX}{then}")

    return handler


def edit_form(
    change: Callable[[Licensing, str, dict[str, str]], Awaitable[None]], page: ListPage, then: str
) -> Page:
    """An edit form of the row `{id}`: the change, then a redirect to `then` (with `{id}`);
    refused, the edit page again with what was typed and each message by its field."""

    async def handler(
        request: web.Request, session: auth.Session, form: dict[str, str]
    ) -> web.StreamResponse:
        row_id = request.match_info["id"]
        try:
            await change(licensing_of(request), row_id, form)
        except Refused as refused:
            return await page(request, session, form, refused)
        return see(f"{PREFIX}{then.format(id=row_id)}")

    return handler


@dataclass(frozen=True)
class Irreversible:
    """What the confirmation before an irreversible action says: `verb` the thing called
    `name(service, id)`, then `outcome`; Cancel goes back to `back` (with `{id}`)."""

    verb: str
    outcome: str
    back: str
    name: Callable[[Licensing, str], Awaitable[str]]
    # The label of a reason asked for on the confirmation (the API takes one), if any.
    asks_reason: str | None = None


def confirm_page(action: Irreversible) -> Page:
    """The page a button of an irreversible action leads to (a GET, so no script is needed):
    what will happen, in words, and the one button that does it (a POST to the same path,
    carrying the fields of the query string, e.g. a reason)."""

    async def handler(
        request: web.Request, session: auth.Session, form: dict[str, str]
    ) -> web.StreamResponse:
        row_id = request.match_info["id"]
        try:
            name = await action.name(licensing_of(request), row_id)
        except Refused as e:
            return render(
                request, "refused.html", status=e.status, session=session,
                title="Not found", message=e.message,
            )  # fmt: skip
        return render(
            request,
            "confirm.html",
            session=session,
            title=f"{action.verb}?",
            verb=action.verb,
            name=name,
            outcome=action.outcome,
            action=request.path,
            fields={k: v for k, v in request.query.items() if k != "csrf"},
            asks_reason=action.asks_reason,
            back=f"{PREFIX}{action.back.format(id=row_id)}",
        )

    return handler


def row_button(
    change: Callable[[Licensing, str], Awaitable[None]], page: ListPage, path: str, done: str
) -> Page:
    """A button on a row of `page`: the change to the row `{id}`, then back to the page with
    what happened (`?done=`), or the page with the refusal."""

    async def handler(
        request: web.Request, session: auth.Session, form: dict[str, str]
    ) -> web.StreamResponse:
        try:
            await change(licensing_of(request), request.match_info["id"])
        except Refused as refused:
            return await page(request, session, {}, refused)
        return see(f"{PREFIX}{path}?done={done}")

    return handler


def irreversible(
    path: str,
    change: Callable[[Licensing, str], Awaitable[None]],
    page: ListPage,
    back: str,
    done: str,
    confirm: Irreversible,
) -> tuple[tuple[str, str, Page], ...]:
    """An irreversible row action's routes: its confirmation page (GET), then the action
    (POST), back to `back` with `?done=`."""
    return (
        ("GET", path, confirm_page(confirm)),
        ("POST", path, row_button(change, page, back, done)),
    )


def page_links(request: web.Request, shown: int, size: int, total: int) -> dict[str, Any]:
    """Which rows of the `total` are shown (1-based) and the links to the pages either side."""
    text = request.query.get("offset", "0")
    offset = int(text) if text.isdigit() and len(text) < 10 else 0
    return {
        "first": offset + 1 if shown else 0,
        "last": offset + shown if shown else 0,
        "total": total,
        "more": request.rel_url.update_query(offset=offset + size)
        if offset + shown < total
        else None,
        "less": request.rel_url.update_query(offset=max(0, offset - size)) if offset else None,
    }


async def search(call: Awaitable[T], empty: T) -> tuple[T, str | None]:
    """The rows a list's query string selects, or `empty` and why the query was refused."""
    try:
        return await call, None
    except Refused as e:
        return empty, e.message
