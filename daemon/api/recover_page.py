"""Keysat's `/recover` page for buyers (its `api/recover.rs`): the invoice id and email of a
purchase in, its license key out, with no account, cookie or support ticket.

Keysat's page posts JSON to `/v1/recover` from an inline script. This one is rendered on the
server (Jinja2, autoescaped) and posts its form to itself, so it works without JavaScript and
is served with the console's strict Content-Security-Policy (no inline script or style at all).
A POST takes a token from the same per-client `recover` bucket as `/v1/recover`, so the page is
no way around that limit on guessing invoice ids.
"""

from __future__ import annotations

import asyncio

import jinja2
from aiohttp import web

from daemon import peers
from daemon.api.ratelimit import RateLimiter
from daemon.api.routes import licensing_of
from daemon.console.web import SECURITY_HEADERS
from daemon.licensing import answers, models, wire
from daemon.licensing.errors import BadRequest, NotFound
from daemon.settings import Settings

PATH = "/recover"
# What the page's form posts (a browser's default for a form without `enctype`).
FORM_TYPE = "application/x-www-form-urlencoded"
# The bucket `/v1/recover` counts in (its route's rate_group).
RATE_GROUP = "recover"

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Recover your license key</title>
</head>
<body>
<main>
<h1>Recover your license key</h1>
<p>If you have lost your license key, enter the invoice id you received at checkout and the
email you bought with. The same key is shown again.</p>
{% if error %}<p role="alert" id="error">{{ error }}</p>{% endif %}
{% if recovered %}
<section id="recovered">
<p>Recovered. Save this key somewhere safe.</p>
<pre>{{ recovered.license_key }}</pre>
<p>Product: {{ recovered.product_slug }}{% if recovered.expires_at %};
expires {{ recovered.expires_at }}{% endif %}.</p>
</section>
{% endif %}
<form method="post" action="{{ path }}">
  <label for="invoice_id">Invoice id</label>
  <input id="invoice_id" name="invoice_id" required autocomplete="off"
         placeholder="11111111-2222-3333-4444-555555555555" value="{{ values.invoice_id }}">
  <label for="email">Email used at purchase</label>
  <input id="email" name="email" type="email" required autocomplete="email"
         value="{{ values.email }}">
  <button type="submit">Recover key</button>
</form>
</main>
</body>
</html>
"""
_PAGE = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string(_TEMPLATE)


def add_recover_page(app: web.Application, limiter: RateLimiter, settings: Settings) -> None:
    """GET shows the form; POST looks the key up (limited as `/v1/recover` is)."""

    async def show(_request: web.Request) -> web.Response:
        return _render(200)

    async def submit(request: web.Request) -> web.Response:
        address = peers.client_address(request, settings.trusted_proxies)
        wait = limiter.retry_after(RATE_GROUP, address) if limiter.enabled else 0
        if wait:
            response = _render(
                429,
                error=f"Too many recovery attempts from your address; nothing was looked up. "
                f"Try again in {wait} seconds.",
            )
            response.headers["Retry-After"] = str(wait)
            return response
        if request.content_type != FORM_TYPE:
            return _render(
                415, error=f"The form must be sent as {FORM_TYPE}, as this page sends it."
            )
        try:
            async with asyncio.timeout(settings.body_timeout):
                posted = await request.post()
        except TimeoutError:
            response = _render(408, error="The form did not arrive in time; send it again.")
            response.force_close()  # the rest of a late body must not be read as a request
            return response
        form = {k: v for k, v in posted.items() if isinstance(v, str)}
        try:
            found = await licensing_of(request).purchases.recover(
                wire.parse(models.RecoverRequest, form)
            )
        except BadRequest as e:
            return _render(400, form, error=f"Nothing was looked up: {e.message}.")
        except NotFound:
            return _render(
                404,
                form,
                error="No license matches that invoice id and email. Check both against the "
                "receipt of your purchase; the email may be in any case.",
            )
        return _render(200, form, recovered=found)

    app.router.add_get(PATH, show)
    app.router.add_post(PATH, submit)


def _render(
    status: int,
    values: dict[str, str] | None = None,
    *,
    error: str | None = None,
    recovered: answers.Recovered | None = None,
) -> web.Response:
    shown = {"invoice_id": "", "email": "", **(values or {})}
    body = _PAGE.render(path=PATH, values=shown, error=error, recovered=recovered)
    response = web.Response(text=body, status=status, content_type="text/html", charset="utf-8")
    response.headers.update(SECURITY_HEADERS)
    return response
