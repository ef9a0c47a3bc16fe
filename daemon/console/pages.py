"""The console's routes: where each page is mounted, the static files, the Overview and the
Upgrades page. The seller's pages are in `seller`, the sign-in and its guard in `signin`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import jinja2
from aiohttp import web

from daemon import metrics
from daemon.console import PREFIX, auth, history, ops
from daemon.console.integrations import INTEGRATION_ROUTES
from daemon.console.seller import SELLER_ROUTES
from daemon.console.signin import login, login_page, logout, serving, signed_in
from daemon.console.web import CONSOLE_KEY, HERE, SECURITY_HEADERS, Console, render, see
from daemon.migrate.ledger import HEAL_ACTION_WORDS, HEAL_LOG_BASIS
from daemon.settings import Settings
from daemon.status import Lifecycle

if TYPE_CHECKING:
    from daemon.licensing.service import Licensing

STATIC_TYPES = {".css": "text/css", ".js": "text/javascript"}


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
    add("POST", f"{PREFIX}/logout", signed_in(logout))
    add("GET", f"{PREFIX}/", signed_in(overview))
    add("GET", f"{PREFIX}/upgrades", signed_in(upgrades))
    for method, path, page in (*SELLER_ROUTES, *INTEGRATION_ROUTES):
        add(method, f"{PREFIX}{path}", signed_in(serving(page)))
    # Last of the console's: a page the browser asks for that does not exist is still a
    # console page, with its headers, not the API's JSON envelope. `[\s\S]` as in the API's.
    add("GET", rf"{PREFIX}/{{path:[\s\S]*}}", _not_found)


async def _to_overview(request: web.Request) -> web.StreamResponse:
    return see(f"{PREFIX}/")


async def _static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    data = request.app[CONSOLE_KEY].static.get(name)
    if data is None:
        return await _not_found(request)
    response = web.Response(body=data, content_type=STATIC_TYPES[Path(name).suffix])
    response.headers.update(SECURITY_HEADERS)
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


async def _not_found(request: web.Request) -> web.StreamResponse:
    return render(
        request,
        "refused.html",
        status=404,
        title="Not found",
        message=f"There is no console page at {request.path}. Nothing was changed.",
    )


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
        heal_actions=HEAL_ACTION_WORDS,
        heal_log_basis=HEAL_LOG_BASIS,
    )
