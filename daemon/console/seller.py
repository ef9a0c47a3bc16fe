"""The seller's pages: products, policies, licenses and their machines, discount codes, revenue
and the audit log. Every call into licensing goes through `ops`; a refused form comes back
filled in, with each message next to its field. Every irreversible action first shows a page
saying what will happen (`confirm_page`), with the one button that does it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from daemon.console import PREFIX, auth, ops
from daemon.console.web import (
    CONSOLE_KEY,
    Irreversible,
    ListPage,
    Page,
    confirm_page,
    create_form,
    edit_form,
    irreversible,
    licensing_of,
    page_links,
    render,
    render_form_page,
    row_button,
    search,
    see,
)
from daemon.licensing import models
from daemon.licensing.codes import strong_code
from daemon.licensing.service import Licensing

# Messages after a change, by the `done` query value of the redirect that follows it.
DONE = {
    "product": "Product created.",
    "product-saved": "Product saved.",
    "product-on": "Product active: it is sold again.",
    "product-off": "Product inactive: it is no longer sold; its licenses keep working.",
    "product-deleted": "Product deleted, with its policies.",
    "policy": "Policy created.",
    "policy-saved": "Policy saved: licenses issued from now on get its terms.",
    "archive": "Policy archived: no longer sold; its licenses keep working.",
    "unarchive": "Policy unarchived: it is sold again.",
    "policy-deleted": "Policy deleted.",
    "revoke": "License revoked: it no longer validates anywhere.",
    "suspend": "License suspended: it does not validate until you unsuspend it.",
    "unsuspend": "License unsuspended: it validates again.",
    "change-tier": "License moved to the policy chosen: its term (from today), machines, "
    "entitlements and trial flag are that policy's now. The buyer's key keeps working.",
    "deactivate": "Machine deactivated: its seat is free again.",
    "code": "Discount code created.",
    "code-saved": "Discount code saved.",
    "enable": "Discount code enabled: it can be redeemed again.",
    "disable": "Discount code disabled: it can no longer be redeemed.",
    "code-deleted": "Discount code deleted.",
}


def _done(request: web.Request) -> str | None:
    return DONE.get(request.query.get("done", ""))


def _not_found(request: web.Request, session: auth.Session, e: ops.Refused) -> web.Response:
    return render(
        request, "refused.html", status=e.status, session=session,
        title="Not found", message=e.message,
    )  # fmt: skip


# ----- products -----


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


def _edit_page(
    load: Callable[[Licensing, str], Awaitable[dict[str, Any]]],
    shown: Callable[[dict[str, Any]], dict[str, str]],
    template: str,
    kind: str,
    page: str,
    extra: Callable[[dict[str, Any]], dict[str, Any]] = lambda found: {},
) -> ListPage:
    """The edit page of the row `{id}`: its form filled in with the row's values (`shown`),
    or with what was typed when refused; the row is `kind` in the template, with the
    template's `extra` values for the row."""

    async def handler(
        request: web.Request,
        session: auth.Session,
        form: dict[str, str],
        refused: ops.Refused | None = None,
    ) -> web.StreamResponse:
        try:
            found = await load(licensing_of(request), request.match_info["id"])
        except ops.Refused as e:
            return _not_found(request, session, e)
        name = found.get("slug") or found.get("code")
        return render_form_page(
            request, template, session, form or shown(found), refused,
            title=f"{kind.capitalize()} {name}", page=page, **{kind: found}, **extra(found),
        )  # fmt: skip

    return handler


def _json_text(value: dict[str, Any]) -> str:
    return json.dumps(value, indent=1, sort_keys=True) if value else ""


def _shown_price(found: dict[str, Any]) -> dict[str, str]:
    """The price shown beside the sats one; none when the price is in sats alone (sending
    SAT and an old value back with a new sats price would disagree)."""
    if found["price_currency"] in models.SATS_CURRENCIES:
        return {}
    return {"price_currency": found["price_currency"], "price_value": str(found["price_value"])}


def _product_values(found: dict[str, Any]) -> dict[str, str]:
    catalog = "\n".join(f"{e['slug']}: {e['name']}" for e in found["entitlements_catalog"])
    return {
        "name": found["name"],
        "description": found["description"],
        "price_sats": str(found["price_sats"]),
        **_shown_price(found),
        "entitlements_catalog": catalog,
        "metadata": _json_text(found["metadata"]),
    }


product_edit = _edit_page(ops.product, _product_values, "product.html", "product", "products")


async def _product_name(service: Licensing, product_id: str) -> str:
    found = await ops.product(service, product_id)
    return f"product '{found['slug']}' ({found['name']})"


# ----- policies -----


async def policies(
    request: web.Request,
    session: auth.Session,
    form: dict[str, str],
    refused: ops.Refused | None = None,
) -> web.StreamResponse:
    service = licensing_of(request)
    catalogue = await ops.products(service)
    return render_form_page(
        request,
        "policies.html",
        session,
        form,
        refused,
        title="Policies",
        page="policies",
        policies=await ops.policies(service),
        products={p["id"]: p["slug"] for p in catalogue},
        product_slugs=[p["slug"] for p in catalogue],
        done=_done(request),
    )


def _policy_values(found: dict[str, Any]) -> dict[str, str]:
    override = found["price_sats_override"]
    return {
        "name": found["name"],
        "description": found["description"],
        "price_sats": "" if override is None else str(override),
        **({} if override is None else _shown_price(found)),
        "duration_days": str(found["duration_seconds"] // ops.SECONDS_PER_DAY or ""),
        "grace_days": str(found["grace_seconds"] // ops.SECONDS_PER_DAY),
        "max_machines": str(found["max_machines"]),
        "entitlements": ", ".join(found["entitlements"]),
        "sort_order": str(found["sort_order"]),
        "metadata": _json_text(found["metadata"]),
        **{flag: "on" for flag in ops.POLICY_FLAGS if found.get(flag)},
    }


policy_edit = _edit_page(ops.policy, _policy_values, "policy.html", "policy", "policies")


async def _policy_name(service: Licensing, policy_id: str) -> str:
    found = await ops.policy(service, policy_id)
    return f"policy '{found['slug']}' ({found['name']})"


# ----- licenses -----


async def licenses(
    request: web.Request,
    session: auth.Session,
    form: dict[str, str],
    refused: ops.Refused | None = None,
) -> web.StreamResponse:
    service = licensing_of(request)
    issued = session.take("license")
    (found, total), search_error = await search(ops.licenses_page(service, request.query), ([], 0))
    catalogue = await ops.products(service)
    return render_form_page(
        request,
        "licenses.html",
        session,
        form,
        refused,
        title="Licenses",
        page="licenses",
        licenses=found,
        rows=page_links(request, len(found), ops.LICENSE_PAGE, total),
        search=request.query.get("q", ""),
        status_filter=request.query.get("status", ""),
        product_filter=request.query.get("product", ""),
        statuses=ops.STATUSES,
        products=catalogue,
        policies=await ops.policies(service),
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
        found, machines, trail = await ops.license_with_machines(
            licensing_of(request), request.match_info["id"]
        )
    except ops.Refused as e:
        return _not_found(request, session, e)
    others = [
        p["slug"]
        for p in await ops.policies(licensing_of(request))
        if p["product_id"] == found["product_id"]
        and p["id"] != found["policy_id"]
        and not p["archived"]  # sold no more
    ]
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
        trail=trail,
        tiers=others,
        done=_done(request),
    )


async def _license_name(service: Licensing, license_id: str) -> str:
    found, _machines, _trail = await ops.license_with_machines(service, license_id)
    buyer = f", sold to {found['buyer_email']}" if found["buyer_email"] else ""
    return f"license {found['id']} of '{found['product_slug']}'{buyer}"


# ----- machines -----


async def machines(
    request: web.Request, session: auth.Session, form: dict[str, str]
) -> web.StreamResponse:
    service = licensing_of(request)
    (found, total), search_error = await search(ops.machines_page(service, request.query), ([], 0))
    return render(
        request,
        "machines.html",
        session=session,
        title="Machines",
        page="machines",
        machines=found,
        rows=page_links(request, len(found), ops.MACHINE_PAGE, total),
        products=await ops.products(service),
        product_filter=request.query.get("product", ""),
        state_filter=request.query.get("state", ""),
        search_error=search_error,
        done=_done(request),
    )


async def _machine_name(service: Licensing, machine_id: str) -> str:
    found = await ops.machine(service, machine_id)
    if found is None:  # older than the newest listed: the deactivation itself says if it exists
        return f"machine {machine_id}"
    host = found["hostname"] or "with no hostname"
    return f"machine {host} of license {found['license_id']}"


async def deactivate_machine(
    request: web.Request, session: auth.Session, form: dict[str, str]
) -> web.StreamResponse:
    try:
        license_id = await ops.deactivate_machine(
            licensing_of(request), request.match_info["id"], form
        )
    except ops.Refused as e:
        return render(
            request, "refused.html", status=e.status, session=session,
            title="Refused", message=e.message,
        )  # fmt: skip
    return see(f"{PREFIX}/licenses/{license_id}?done=deactivate")


# ----- revenue -----


async def revenue(
    request: web.Request, session: auth.Session, form: dict[str, str]
) -> web.StreamResponse:
    db_path = request.app[CONSOLE_KEY].settings.db_path
    return render(
        request,
        "revenue.html",
        session=session,
        title="Revenue",
        page="revenue",
        summary=await ops.revenue(licensing_of(request)),
        sales=await asyncio.to_thread(ops.revenue_by_product, db_path),
    )


# ----- discount codes -----


async def codes(
    request: web.Request,
    session: auth.Session,
    form: dict[str, str],
    refused: ops.Refused | None = None,
) -> web.StreamResponse:
    service = licensing_of(request)
    catalogue = await ops.products(service)
    slugs = {p["id"]: p["slug"] for p in catalogue}
    offered = await ops.policies(service)
    # A fresh form offers a strong code; a refused one shows what the seller typed.
    return render_form_page(
        request,
        "codes.html",
        session,
        form if "code" in form else {**form, "code": strong_code()},
        refused,
        posted=bool(form),
        title="Discount codes",
        page="codes",
        codes=await ops.codes(service),
        kinds=ops.KINDS,
        product_slugs=[p["slug"] for p in catalogue],
        **_policy_choices(offered, slugs),
        policy_slugs={p["id"]: p["slug"] for p in offered},
        done=_done(request),
    )


def _policy_choices(
    offered: list[dict[str, Any]], product_slugs: dict[str, str] | None = None
) -> dict[str, Any]:
    """The checkboxes of the policies a code can be limited to, labelled with their product's
    slug when `product_slugs` (id: slug) is given (the create form offers every product's)."""
    named = product_slugs or {}
    listed = sorted(offered, key=lambda p: (named.get(p["product_id"], ""), p["slug"]))
    return {
        "policy_field": ops.POLICY_FIELD,
        "policy_choices": [
            {
                "id": p["id"],
                "label": " · ".join(filter(None, (named.get(p["product_id"]), p["slug"])))
                + f" ({p['name']}{', archived' if p['archived'] else ''})",
            }
            for p in listed
        ],
    }


def _code_values(found: dict[str, Any]) -> dict[str, str]:
    amount = found["amount"]
    return {
        "amount": f"{amount / 100:g}" if found["kind"] == "percent" else str(amount),
        "max_redemptions": str(found["max_uses"] or ""),
        "expires_at": found["expires_at"] or "",
        "description": found["description"],
        "referrer_label": found["referrer_label"] or "",
        **{f"{ops.POLICY_FIELD}{policy_id}": "on" for policy_id in found["policy_ids"]},
    }


code_edit = _edit_page(
    ops.code, _code_values, "code.html", "code", "codes",
    extra=lambda found: _policy_choices(found["product_policies"]),
)  # fmt: skip


async def _code_name(service: Licensing, code_id: str) -> str:
    return f"discount code '{(await ops.code(service, code_id))['code']}'"


# ----- audit -----


async def audit(
    request: web.Request, session: auth.Session, form: dict[str, str]
) -> web.StreamResponse:
    service = licensing_of(request)
    (entries, total), search_error = await search(ops.audit_page(service, request.query), ([], 0))
    keys = await ops.api_keys(service)
    return render(
        request,
        "audit.html",
        session=session,
        title="Audit log",
        page="audit",
        entries=entries,
        rows=page_links(request, len(entries), ops.AUDIT_PAGE, total),
        search_error=search_error,
        action_filter=request.query.get("action", ""),
        actor_filter=request.query.get("actor", ""),
        actors=ops.audit_actors(keys),
    )


SELLER_ROUTES: tuple[tuple[str, str, Page], ...] = (
    ("GET", "/products", products),
    ("POST", "/products", create_form(ops.create_product, products, "/products?done=product")),
    ("GET", "/products/{id}", product_edit),
    ("POST", "/products/{id}",
     edit_form(ops.update_product, product_edit, "/products?done=product-saved")),
    ("POST", "/products/{id}/activate",
     row_button(ops.activate_product, products, "/products", "product-on")),
    ("POST", "/products/{id}/deactivate",
     row_button(ops.deactivate_product, products, "/products", "product-off")),
    *irreversible(
        "/products/{id}/delete", ops.delete_product, products, "/products", "product-deleted",
        Irreversible("Delete", "the product and its policies are deleted for good. Only a "
                     "product nothing was sold or issued under can be deleted.",
                     "/products", _product_name),
    ),
    ("GET", "/policies", policies),
    ("POST", "/policies", create_form(ops.create_policy, policies, "/policies?done=policy")),
    ("GET", "/policies/{id}", policy_edit),
    ("POST", "/policies/{id}",
     edit_form(ops.update_policy, policy_edit, "/policies?done=policy-saved")),
    ("POST", "/policies/{id}/archive",
     row_button(ops.archive_policy, policies, "/policies", "archive")),
    ("POST", "/policies/{id}/unarchive",
     row_button(ops.unarchive_policy, policies, "/policies", "unarchive")),
    *irreversible(
        "/policies/{id}/delete", ops.delete_policy, policies, "/policies", "policy-deleted",
        Irreversible("Delete", "the policy is deleted for good. Only a policy nothing was "
                     "sold or issued under can be deleted; archive it otherwise.",
                     "/policies", _policy_name),
    ),
    ("GET", "/licenses", licenses),
    (
        "POST",
        "/licenses",
        create_form(ops.issue_license, licenses, "/licenses", show_once="license"),
    ),
    ("GET", "/licenses/{id}", license_detail),
    ("GET", "/licenses/{id}/revoke", confirm_page(
        Irreversible("Revoke", "it stops validating everywhere at once, and no machine can "
                     "activate it again. This cannot be undone.",
                     "/licenses/{id}", _license_name))),
    *(
        ("POST", f"/licenses/{{id}}/{done}",
         edit_form(change, license_detail, f"/licenses/{{id}}?done={done}"))
        for done, change in (
            ("revoke", ops.revoke), ("suspend", ops.suspend), ("unsuspend", ops.unsuspend),
            ("change-tier", ops.change_tier),
        )
    ),
    ("GET", "/machines", machines),
    ("GET", "/machines/{id}/deactivate", confirm_page(
        Irreversible("Deactivate", "it no longer validates on that machine and frees its seat; "
                     "the buyer can activate it again.", "/machines", _machine_name,
                     asks_reason="Reason (recorded in the audit log)"))),
    ("POST", "/machines/{id}/deactivate", deactivate_machine),
    ("GET", "/revenue", revenue),
    ("GET", "/codes", codes),
    ("POST", "/codes", create_form(ops.create_code, codes, "/codes?done=code")),
    ("GET", "/codes/{id}", code_edit),
    ("POST", "/codes/{id}", edit_form(ops.update_code, code_edit, "/codes?done=code-saved")),
    ("POST", "/codes/{id}/enable", row_button(ops.enable_code, codes, "/codes", "enable")),
    *irreversible(
        "/codes/{id}/disable", ops.disable_code, codes, "/codes", "disable",
        Irreversible("Disable", "buyers who hold the code can no longer redeem it; you can "
                     "enable it again later.", "/codes", _code_name),
    ),
    *irreversible(
        "/codes/{id}/delete", ops.delete_code, codes, "/codes", "code-deleted",
        Irreversible("Delete", "the code is deleted for good. Only a code never redeemed can "
                     "be deleted; disable it otherwise.", "/codes", _code_name),
    ),
    ("GET", "/audit", audit),
)  # fmt: skip
