"""The seller's pages: products, policies, licenses and their machines, discount codes, and the
audit log. Every call into licensing goes through `ops`; a refused form comes back filled in,
with the message next to its field.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from daemon.console import PREFIX, auth, ops
from daemon.console.web import (
    Page,
    create_form,
    licensing_of,
    render,
    render_form_page,
    row_button,
    see,
)
from daemon.licensing.codes import strong_code

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


def _done(request: web.Request) -> str | None:
    return DONE.get(request.query.get("done", ""))


async def products(
    request: web.Request,
    session: auth.Session,
    form: dict[str, str],
    refused: ops.Refused | None = None,
) -> web.StreamResponse:
    return render_form_page(
        request,
        "products.html",
        session,
        form,
        refused,
        title="Products",
        page="products",
        products=await ops.products(licensing_of(request)),
        done=_done(request),
    )


async def policies(
    request: web.Request,
    session: auth.Session,
    form: dict[str, str],
    refused: ops.Refused | None = None,
) -> web.StreamResponse:
    service = licensing_of(request)
    return render_form_page(
        request,
        "policies.html",
        session,
        form,
        refused,
        title="Policies",
        page="policies",
        policies=await ops.policies(service),
        products={p["id"]: p["slug"] for p in await ops.products(service)},
        done=_done(request),
    )


async def licenses(
    request: web.Request,
    session: auth.Session,
    form: dict[str, str],
    refused: ops.Refused | None = None,
) -> web.StreamResponse:
    issued = session.take("license")
    found: list[dict[str, Any]] = []
    search_error = None
    try:
        found = await ops.licenses(licensing_of(request), request.query)
    except ops.Refused as e:
        search_error = e.message
    offset = request.query.get("offset", "0")
    more = None
    if len(found) == ops.LICENSE_PAGE and offset.isdigit():
        more = request.rel_url.update_query(offset=int(offset) + ops.LICENSE_PAGE)
    return render_form_page(
        request,
        "licenses.html",
        session,
        form,
        refused,
        title="Licenses",
        page="licenses",
        licenses=found,
        more=more,
        search=request.query.get("q", ""),
        status_filter=request.query.get("status", ""),
        statuses=ops.STATUSES,
        search_error=search_error,
        issued=issued,
    )


async def license_detail(
    request: web.Request,
    session: auth.Session,
    form: dict[str, str],
    refused: ops.Refused | None = None,
) -> web.StreamResponse:
    try:
        found, machines = await ops.license_with_machines(
            licensing_of(request), request.match_info["id"]
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
    return render_form_page(
        request,
        "license.html",
        session,
        form,
        refused,
        title="License",
        page="licenses",
        license=found,
        machines=machines,
        done=_done(request),
    )


def _license_change(
    change: Callable[[Any, str, dict[str, str]], Awaitable[Any]], done: str
) -> Page:
    async def handler(
        request: web.Request, session: auth.Session, form: dict[str, str]
    ) -> web.StreamResponse:
        license_id = request.match_info["id"]
        try:
            await change(licensing_of(request), license_id, form)
        except ops.Refused as refused:
            return await license_detail(request, session, form, refused)
        return see(f"{PREFIX}/licenses/{license_id}?done={done}")

    return handler


async def deactivate_machine(
    request: web.Request, session: auth.Session, form: dict[str, str]
) -> web.StreamResponse:
    try:
        license_id = await ops.deactivate_machine(
            licensing_of(request), request.match_info["id"], form
        )
    except ops.Refused as e:
        return render(
            request,
            "refused.html",
            status=e.status,
            session=session,
            title="Refused",
            message=e.message,
        )
    return see(f"{PREFIX}/licenses/{license_id}?done=deactivate")


async def codes(
    request: web.Request,
    session: auth.Session,
    form: dict[str, str],
    refused: ops.Refused | None = None,
) -> web.StreamResponse:
    # A fresh form offers a strong code; a refused one shows what the seller typed.
    return render_form_page(
        request,
        "codes.html",
        session,
        form if "code" in form else {**form, "code": strong_code()},
        refused,
        title="Discount codes",
        page="codes",
        codes=await ops.codes(licensing_of(request)),
        kinds=ops.KINDS,
        done=_done(request),
    )


async def audit(
    request: web.Request, session: auth.Session, form: dict[str, str]
) -> web.StreamResponse:
    before = request.query.get("before", "")
    before_id = int(before) if before.isdigit() and 0 < int(before) < 2**62 else None
    entries = await ops.audit(licensing_of(request), before_id)
    return render(
        request,
        "audit.html",
        session=session,
        title="Audit log",
        page="audit",
        entries=entries,
        older=entries[-1]["id"] if len(entries) == ops.AUDIT_PAGE else None,
    )


SELLER_ROUTES: tuple[tuple[str, str, Page], ...] = (
    ("GET", "/products", products),
    ("POST", "/products", create_form(ops.create_product, products, "/products?done=product")),
    ("GET", "/policies", policies),
    ("POST", "/policies", create_form(ops.create_policy, policies, "/policies?done=policy")),
    ("GET", "/licenses", licenses),
    (
        "POST",
        "/licenses",
        create_form(ops.issue_license, licenses, "/licenses", show_once="license"),
    ),
    ("GET", "/licenses/{id}", license_detail),
    ("POST", "/licenses/{id}/revoke", _license_change(ops.revoke, "revoke")),
    ("POST", "/licenses/{id}/suspend", _license_change(ops.suspend, "suspend")),
    ("POST", "/licenses/{id}/unsuspend", _license_change(ops.unsuspend, "unsuspend")),
    ("POST", "/machines/{id}/deactivate", deactivate_machine),
    ("GET", "/codes", codes),
    ("POST", "/codes", create_form(ops.create_code, codes, "/codes?done=code")),
    ("POST", "/codes/{id}/disable", row_button(ops.disable_code, codes, "/codes", "disable")),
    ("GET", "/audit", audit),
)
