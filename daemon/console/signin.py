"""Who may use the console: sign-in and sign-out, and the guard around every other page.

Every POST except the sign-in needs the session's CSRF token; every POST from a browser must
come from this origin. Without a password set, every page is the one explaining how to set it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web

from daemon import peers
from daemon.console import PREFIX, auth, password
from daemon.console.web import CONSOLE_KEY, Page, PasswordUnreadable, render, see
from daemon.licensing.core import acting_as
from daemon.logs import register_secret

log = logging.getLogger("keysmith.console")


def _same_origin(request: web.Request) -> bool:
    """A browser names the site that sent a POST in Origin; it must be this console's. (The
    Referrer-Policy is same-origin: "no-referrer" would make browsers send "null" here.)"""
    origin = request.headers.get("Origin")
    if origin is None:  # not a browser, or a very old one: the CSRF token still decides
        return True
    console = request.app[CONSOLE_KEY]
    scheme = "https" if peers.over_tls(request, console.settings.trusted_proxies) else "http"
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


async def _read_form(request: web.Request) -> dict[str, str] | None:
    """The posted form's text fields, or None when the body did not arrive within the body
    timeout (KEYSMITH_BODY_TIMEOUT, the API's bound): a client trickling a body must not hold
    a handler open forever."""
    try:
        async with asyncio.timeout(request.app[CONSOLE_KEY].settings.body_timeout):
            posted = await request.post()
    except TimeoutError:
        return None
    return {k: v for k, v in posted.items() if isinstance(v, str)}


def _too_slow(request: web.Request, session: auth.Session | None) -> web.Response:
    timeout = request.app[CONSOLE_KEY].settings.body_timeout
    log.warning(
        f"console form refused: its body did not arrive within {timeout:g} s",
        extra={"path": request.path},
    )
    response = render(
        request,
        "refused.html",
        status=408,
        session=session,
        title="Form too slow",
        message=f"This form did not arrive within {timeout:g} seconds, so it was refused. "
        "Nothing was changed. Check the connection, reload the page and send it again.",
    )
    response.force_close()  # the rest of a late body must not be read as a new request
    return response


def signed_in(page: Page) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
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
                return await _sign_in_again(request)
            return see(f"{PREFIX}/login")
        form = session.take_kept(request.path_qs)
        if request.method == "POST":
            posted = await _read_form(request)
            if posted is None:
                return _too_slow(request, session)
            form = posted
            if not _same_origin(request) or not auth.csrf_ok(session, form.pop("csrf", None)):
                return _refused(request, session)
        with acting_as("console"):
            return await page(request, session, form)

    return wrapped


# What a kept form's page may be: a console path, nothing another site could point to.
_BACK = re.compile(rf"^{PREFIX}/[A-Za-z0-9/_.~%?&=+-]*$")
KEEP = "keep:"


async def _sign_in_again(request: web.Request) -> web.Response:
    """A form posted after the session ended (idle, or the daemon restarted): the sign-in
    page, carrying what was typed, which the page the form came from shows again after the
    sign-in (not sent: the seller checks it and sends it). From another site: refused."""
    if not _same_origin(request):
        return _refused(request, None)
    posted = await _read_form(request)
    if posted is None:
        return _too_slow(request, None)
    posted.pop("csrf", None)
    referer = urlsplit(request.headers.get("Referer", ""))
    back = referer.path + (f"?{referer.query}" if referer.query else "")
    if referer.netloc != request.host or not _BACK.match(back):
        back = request.path
    return render(
        request,
        "login.html",
        status=401,
        title="Sign in",
        error="Your session ended, so the form was not sent; nothing was changed. Sign in "
        "again: what you typed is kept and shown again for you to send.",
        back=back,
        kept={f"{KEEP}{name}": value for name, value in posted.items()},
    )


def serving(page: Page) -> Page:
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
    return render(request, "login.html", title="Sign in", error=None, back=None, kept={})


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
    address = peers.client_address(request, console.settings.trusted_proxies)
    device = auth.known_device(request.cookies.get(auth.DEVICE_COOKIE), stored)
    if device is None:
        turn = console.limiter.admit(address)
    else:
        turn = console.limiter.admit(f"device {device}", queued=False)
    if isinstance(turn, auth.Paused):
        return _too_many(request, turn.retry_after)
    matches: bool | None = None
    try:
        form = await _read_form(request)
        if form is None:
            return _too_slow(request, None)
        waited = await _wait_for(turn)
        given = form.get("password")
        async with console.verify_slots:
            matches = given is not None and await asyncio.to_thread(password.verify, stored, given)
    finally:
        console.limiter.finish(turn, matches)
    if not matches:
        log.warning("console sign-in failed: wrong password", extra={"client": address})
        paused = console.limiter.paused(turn.key)
        if paused is not None:
            return _too_many(request, paused.retry_after)
        slowed = (
            f" Sign-in is slowed after many wrong passwords: this attempt waited {waited:.0f} "
            "seconds for its turn."
            if turn.slowed
            else ""
        )
        return render(
            request,
            "login.html",
            status=401,
            title="Sign in",
            error=f"That password is not the console password. Nothing was changed.{slowed}",
            back=form.get("back"),
            kept={k: v for k, v in form.items() if k.startswith(KEEP)},
        )
    # Known now: never print it, even where only its hash was stored (the action's password).
    register_secret(given)
    back = form.get("back", "")
    kept = {k.removeprefix(KEEP): v for k, v in form.items() if k.startswith(KEEP)}
    back = back if _BACK.match(back) else f"{PREFIX}/"
    token = console.sessions.open(auth.fingerprint(stored), (back, kept) if kept else None)
    log.info("console sign-in", extra={"client": address})
    response = see(back)
    response.set_cookie(
        auth.COOKIE,
        token,
        path=PREFIX,
        httponly=True,
        samesite="Strict",
        secure=peers.over_tls(request, console.settings.trusted_proxies),
        max_age=auth.ABSOLUTE_SECONDS,
    )
    if device is None:
        response.set_cookie(
            auth.DEVICE_COOKIE,
            auth.device_cookie(stored),
            path=PREFIX,
            httponly=True,
            samesite="Strict",
            secure=peers.over_tls(request, console.settings.trusted_proxies),
            max_age=auth.DEVICE_SECONDS,
        )
    return response


async def _wait_for(turn: auth.Turn) -> float:
    """Sleep until the attempt's turn (sign-in slowed); the seconds waited."""
    wait = max(0.0, turn.start - time.monotonic())
    if turn.slowed:
        log.warning(
            "console sign-in slowed: many wrong passwords in the last five minutes",
            extra={"client": turn.key, "wait_seconds": round(wait, 1)},
        )
    await asyncio.sleep(wait)
    return wait


def _too_many(request: web.Request, wait: int) -> web.Response:
    response = render(
        request,
        "login.html",
        status=429,
        title="Sign in",
        error=f"Too many wrong passwords from here: sign-in is paused for {wait} seconds for "
        "this address or browser only. Nothing was changed. Wait, then try again; if you "
        "forgot the password, set a new one with the action 'Set console password'.",
        back=None,
        kept={},
    )
    response.headers["Retry-After"] = str(wait)
    return response


async def logout(
    request: web.Request, session: auth.Session, form: dict[str, str]
) -> web.StreamResponse:
    console = request.app[CONSOLE_KEY]
    console.sessions.close(request.cookies.get(auth.COOKIE))
    response = see(f"{PREFIX}/login")
    response.del_cookie(auth.COOKIE, path=PREFIX)
    return response
