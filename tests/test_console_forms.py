"""The console's forms against the API's request models, over HTTP (no browser), against the
real daemon: every field an admin route takes is on the console's form for it, or listed here
with why not; and the forms added for them (a policy's shown price, a code's policies as
checkboxes) do what the API does, keeping what was typed when refused."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

import msgspec
import pytest

import daemon.api.mount  # noqa: F401  (registers every route into the table)
from daemon.api.table import ENDPOINTS, Nothing
from daemon.console import ops
from tests import test_console_seller as seller
from tests.test_api_support import admin, db_dump, make_product, must, unique
from tests.test_console_security import fetch
from tests.test_console_seller import error_of, post, value_of

# The seller tests' daemon and signed-in session, one per module.
shop, cookie = seller.shop, seller.cookie


@dataclass(frozen=True)
class Form:
    """The console form sending an admin route's body: the page it is on (`{...}` filled in
    from the rows the test makes), its method and action, and each body field not on it with
    the reason."""

    page: str
    action: str
    method: str = "post"
    absent: dict[str, str] = field(default_factory=dict)


BUTTONS = "a button on the list sets it, not a field of the form"
FORMS: dict[tuple[str, str], Form] = {
    ("POST", "/v1/admin/products"): Form("/admin/products", "/admin/products"),
    ("PATCH", "/v1/admin/products/{id}"): Form(
        "/admin/products/{product}", "/admin/products/{product}",
        absent={"active": f"Activate / Deactivate: {BUTTONS}"},
    ),
    ("POST", "/v1/admin/policies"): Form(
        "/admin/policies", "/admin/policies",
        absent={"product_id": "the form names the product by its slug (product_slug)"},
    ),
    ("PATCH", "/v1/admin/policies/{id}"): Form(
        "/admin/policies/{policy}", "/admin/policies/{policy}",
        absent={"active": f"Archive / Unarchive: {BUTTONS}"},
    ),
    ("POST", "/v1/admin/discount-codes"): Form(
        "/admin/codes", "/admin/codes",
        absent={
            "policy_slug": "one policy of several: the checkboxes send policy_slugs",
            "discount_currency": "only SAT is taken, and the form's amounts are in sats",
            "featured": "only false is taken: Keysmith has no buy page for a launch special",
        },
    ),
    ("PATCH", "/v1/admin/discount-codes/{id}"): Form(
        "/admin/codes/{code}", "/admin/codes/{code}",
        absent={
            "active": f"Enable / Disable…: {BUTTONS}",
            "featured": "only false is taken: Keysmith has no buy page for a launch special",
        },
    ),
    ("POST", "/v1/admin/licenses"): Form("/admin/licenses", "/admin/licenses"),
    ("POST", "/v1/admin/licenses/{id}/revoke"): Form(
        "/admin/licenses/{license}", "/admin/licenses/{license}/revoke", method="get"
    ),
    ("POST", "/v1/admin/licenses/{id}/suspend"): Form(
        "/admin/licenses/{license}", "/admin/licenses/{license}/suspend"
    ),
    ("POST", "/v1/admin/licenses/{id}/change-tier"): Form(
        "/admin/licenses/{license}", "/admin/licenses/{license}/change-tier",
        absent={"skip_payment": "always true: with no payment provider, a move is a comp"},
    ),
    ("POST", "/v1/admin/machines/{id}/deactivate"): Form(
        "/admin/machines/{machine}/deactivate", "/admin/machines/{machine}/deactivate"
    ),
    ("POST", "/v1/admin/api-keys"): Form("/admin/api-keys", "/admin/api-keys"),
    ("POST", "/v1/admin/webhook-endpoints"): Form(
        "/admin/webhooks", "/admin/webhooks",
        absent={"secret": "generated (32 random bytes) and shown once: a typed one could be weak"},
    ),
}  # fmt: skip
# Admin routes with a body the console has no form for, and why.
NO_FORM = {
    ("PATCH", "/v1/admin/discount-codes/{id}/active"): f"Enable / Disable…: {BUTTONS}",
    ("PATCH", "/v1/admin/webhook-endpoints/{id}/active"): f"Enable / Disable: {BUTTONS}",
    ("PATCH", "/v1/admin/products/{id}/active"): f"Activate / Deactivate: {BUTTONS}",
    ("PATCH", "/v1/admin/policies/{id}/public"): "the policy form's 'Shown in the public "
    "catalogue' checkbox (PolicyUpdate.public)",
    ("PATCH", "/v1/admin/policies/{id}/archived"): f"Archive / Unarchive: {BUTTONS}",
    ("PATCH", "/v1/admin/policies/{id}/active"): f"Archive / Unarchive: {BUTTONS}",
    ("POST", "/v1/admin/settings/operator-name"): "a StartOS action sets the operator's name",
    ("POST", "/v1/admin/import-issuer-key"): "master key only: a StartOS action imports it",
}
# The form's name for an API field where they differ (days, redemptions, a price); a name
# ending in "-" is a group of checkboxes, one per choice.
FORM_NAME = {
    **{api: form for api, (form, _label) in ops.FORM_NAME.items()},
    "policy_slugs": ops.POLICY_FIELD,
    "event_types": ops.EVENT_FIELD,
}
BODY_ROUTES = sorted(
    (e.method, e.path, e.body)
    for e in ENDPOINTS
    if e.tag == "admin" and e.body is not Nothing
)  # fmt: skip


def _route_id(value: object) -> str:
    return value.__name__ if isinstance(value, type) else str(value)


class _Controls(HTMLParser):
    """The names of each form's controls, by (method, action)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: dict[tuple[str, str], set[str]] = {}
        self._open: set[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "form":
            key = ((named.get("method") or "get").lower(), named.get("action") or "")
            self._open = self.forms.setdefault(key, set())
        elif tag in ("input", "select", "textarea") and self._open is not None:
            self._open.add(named.get("name") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._open = None


def _on_form(api_name: str, controls: set[str]) -> bool:
    name = FORM_NAME.get(api_name, api_name)
    if name.endswith("-"):
        return any(c.startswith(name) for c in controls)
    return name in controls


@pytest.fixture(scope="module")
def rows(shop, cookie) -> dict[str, str]:
    """One row of each kind a form edits: a product with a policy, a code limited to it, a
    license with a machine."""
    product = make_product(shop)
    must(admin(shop, "POST", "/v1/admin/policies",
               {"product_slug": product, "slug": "pro", "name": "Pro"}), 200)  # fmt: skip
    (made,) = [
        p for p in must(admin(shop, "GET", "/v1/admin/products"), 200)["products"]
        if p["slug"] == product
    ]  # fmt: skip
    policies = must(admin(shop, "GET", f"/v1/admin/policies?product_slug={product}"), 200)
    body = {"code": unique("ROW").upper(), "kind": "percent", "amount": 1000,
            "product_slug": product, "policy_slugs": ["standard"]}  # fmt: skip
    code = must(admin(shop, "POST", "/v1/admin/discount-codes", body), 200)
    issued = must(admin(shop, "POST", "/v1/admin/licenses", {"product_slug": product}), 200)
    machine = {"key": issued["license_key"], "fingerprint": unique("fp"), "hostname": "box"}
    activated = must(shop.request("POST", "/v1/machines/activate", machine), 200)
    return {
        "product": made["id"],
        "policy": policies["policies"][0]["id"],
        "code": code["id"],
        "license": issued["license_id"],
        "machine": activated["machine_id"],
    }


def test_every_route_with_a_body_has_a_console_form_or_a_reason():
    # A new admin route taking a body fails here until it has a form or a reason.
    routes = {(method, path) for method, path, _ in BODY_ROUTES}
    assert routes - FORMS.keys() - NO_FORM.keys() == set()
    assert (FORMS.keys() | NO_FORM.keys()) - routes == set(), "listed routes that are gone"


# The routes with a console form (the others are in NO_FORM with the reason, checked above).
FORM_ROUTES = [r for r in BODY_ROUTES if (r[0], r[1]) in FORMS]


@pytest.mark.parametrize(("method", "path", "model"), FORM_ROUTES, ids=_route_id)
def test_every_field_the_api_takes_is_on_the_console_form_or_listed_why_not(
    shop, cookie, rows, method, path, model
):
    # Found: PolicyCreate and PolicyUpdate take price_currency and price_value (Keysat's
    # shown price); the policy forms had no field for them.
    form = FORMS[(method, path)]
    status, _, body = fetch(shop, "GET", form.page.format(**rows), cookie)
    assert status == 200, body[:3000]
    parser = _Controls()
    parser.feed(body)
    controls = parser.forms.get((form.method, form.action.format(**rows)))
    assert controls is not None, f"no <form> to {form.action} on {form.page}"
    taken = {f.name for f in msgspec.structs.fields(model)}
    missing = sorted(n for n in taken - form.absent.keys() if not _on_form(n, controls))
    assert missing == [], (
        f"{model.__name__} takes {missing}, which the console's form on {form.page} lacks: "
        "add a field for each, or list it in FORMS[...].absent with why"
    )
    assert sorted(form.absent.keys() - taken) == [], "listed as absent, not taken by the API"
    shown = sorted(n for n in form.absent if _on_form(n, controls))
    assert shown == [], "listed as absent, yet on the form"


def _policy(d, product: str, slug: str) -> dict:
    listed = must(admin(d, "GET", f"/v1/admin/policies?product_slug={product}"), 200)
    return next(p for p in listed["policies"] if p["slug"] == slug)


def test_a_policy_is_priced_in_a_currency_from_the_console(shop, cookie):
    # Found: the API takes a policy's price_currency / price_value; the console had no field.
    product = make_product(shop)
    form = {"product_slug": product, "slug": "pro", "name": "Pro", "price_sats": "30000",
            "price_currency": "usd", "price_value": "1999", "public": "on"}  # fmt: skip
    status, _, body = post(shop, "/admin/policies", cookie, form, "/admin/policies")
    assert status == 303, body[:2000]
    made = _policy(shop, product, "pro")
    assert (made["price_sats"], made["price_currency"], made["price_value"]) == (30000, "USD", 1999)
    _, _, listed = fetch(shop, "GET", "/admin/policies", cookie)
    assert "(shown as 1999 USD)" in listed

    page = f"/admin/policies/{made['id']}"
    _, _, edit = fetch(shop, "GET", page, cookie)
    assert (value_of(edit, "price_currency"), value_of(edit, "price_value")) == ("USD", "1999")
    form = {"name": "Pro", "price_sats": "32000", "price_currency": "EUR", "price_value": "1899"}
    status, _, body = post(shop, page, cookie, form, page)
    assert status == 303, body[:2000]
    saved = _policy(shop, product, "pro")
    assert (saved["price_sats"], saved["price_currency"], saved["price_value"]) == (
        32000, "EUR", 1899,
    )  # fmt: skip

    # The shown price emptied: the price is in sats alone again.
    status, _, _ = post(shop, page, cookie, {"name": "Pro", "price_sats": "33000"}, page)
    assert status == 303
    saved = _policy(shop, product, "pro")
    assert (saved["price_sats"], saved["price_currency"], saved["price_value"]) == (
        33000, "SAT", 33000,
    )  # fmt: skip


def test_a_shown_price_comes_whole_and_with_the_policys_own_price(shop, cookie):
    product = make_product(shop)
    before = db_dump(shop)
    form = {"product_slug": product, "slug": "half", "name": "Half", "price_currency": "USD",
            "max_machines": "x"}  # fmt: skip
    status, _, body = post(shop, "/admin/policies", cookie, form, "/admin/policies")
    assert status == 400 and db_dump(shop) == before
    assert (error_of(body, "price_value") or "").startswith("Give the shown price's currency")
    assert (error_of(body, "price_currency") or "").startswith("A shown price needs the policy's")
    assert error_of(body, "max_machines") is not None  # all at once
    assert value_of(body, "price_currency") == "USD" and value_of(body, "slug") == "half"


def test_emptying_a_products_shown_price_prices_it_in_sats_alone(shop, cookie):
    # Found: the edit form showed the shown-price fields empty, but the API kept USD, since
    # an absent field stays as it is: the seller could not go back to sats alone.
    slug = unique("shown")
    body = {"slug": slug, "name": "Shown", "price_sats": 20000, "price_currency": "USD",
            "price_value": 1299}  # fmt: skip
    made = must(admin(shop, "POST", "/v1/admin/products", body), 200)
    page = f"/admin/products/{made['id']}"
    status, _, _ = post(shop, page, cookie, {"name": "Shown", "price_sats": "21000"}, page)
    assert status == 303
    (saved,) = [p for p in must(admin(shop, "GET", "/v1/admin/products"), 200)["products"]
                if p["slug"] == slug]  # fmt: skip
    assert (saved["price_sats"], saved["price_currency"], saved["price_value"]) == (
        21000, "SAT", 21000,
    )  # fmt: skip


def _checkbox(body: str, policy_id: str) -> str | None:
    """The checkbox of a policy on a code form: 'checked', '' (unchecked) or None (absent)."""
    found = re.search(
        rf'<input id="f-{ops.POLICY_FIELD}{policy_id}" name="{ops.POLICY_FIELD}{policy_id}" '
        r'type="checkbox"( checked)?>',
        body,
    )
    return None if found is None else (found[1] or "").strip()


def test_a_code_is_limited_to_policies_ticked_on_the_form(shop, cookie):
    # Found: the create form offered one policy by slug from every product's (a slug names
    # a policy only within its product) and the edit form took typed slugs.
    product, other = make_product(shop), make_product(shop)
    must(admin(shop, "POST", "/v1/admin/policies",
               {"product_slug": product, "slug": "yearly", "name": "Yearly"}), 200)  # fmt: skip
    standard, yearly = _policy(shop, product, "standard"), _policy(shop, product, "yearly")
    theirs = _policy(shop, other, "standard")
    _, _, page = fetch(shop, "GET", "/admin/codes", cookie)
    assert f"{product} · yearly (Yearly)" in page and _checkbox(page, theirs["id"]) == ""

    # Refused (a policy of another product ticked, a bad amount): every message by its field,
    # nothing written, every box and value as it was.
    before = db_dump(shop)
    code = unique("TICK").upper()
    form = {"code": code, "kind": "percent", "amount": "150", "product_slug": product,
            f"{ops.POLICY_FIELD}{yearly['id']}": "on",
            f"{ops.POLICY_FIELD}{theirs['id']}": "on"}  # fmt: skip
    status, _, body = post(shop, "/admin/codes", cookie, form, "/admin/codes")
    assert status == 400 and db_dump(shop) == before
    assert (error_of(body, "policy_slugs") or "").startswith(
        "Policy 'standard' is of another product than the one chosen"
    )
    assert error_of(body, "amount") is not None
    assert (_checkbox(body, yearly["id"]), _checkbox(body, theirs["id"])) == ("checked", "checked")
    assert _checkbox(body, standard["id"]) == "" and value_of(body, "code") == code
    assert value_of(body, "amount") == "150"

    # Ticked with no product chosen: said next to the boxes.
    no_product = {**form, "product_slug": "", "amount": "10"}
    del no_product[f"{ops.POLICY_FIELD}{theirs['id']}"]
    status, _, body = post(shop, "/admin/codes", cookie, no_product, "/admin/codes")
    assert status == 400 and db_dump(shop) == before
    assert (error_of(body, "policy_slugs") or "").startswith("Choose the product these policies")

    del form[f"{ops.POLICY_FIELD}{theirs['id']}"]
    status, _, body = post(shop, "/admin/codes", cookie, {**form, "amount": "10"}, "/admin/codes")
    assert status == 303, body[:2000]
    (made,) = [
        c for c in must(admin(shop, "GET", "/v1/admin/discount-codes"), 200)["codes"]
        if c["code"] == code
    ]  # fmt: skip
    assert made["applies_to_policy_id"] == yearly["id"]

    # Edited: the boxes show its policies; ticking both limits it to both, none lifts it.
    edit = f"/admin/codes/{made['id']}"
    _, _, shown = fetch(shop, "GET", edit, cookie)
    assert (_checkbox(shown, yearly["id"]), _checkbox(shown, standard["id"])) == ("checked", "")
    assert _checkbox(shown, theirs["id"]) is None  # another product's: not offered
    both = {"amount": "10", f"{ops.POLICY_FIELD}{yearly['id']}": "on",
            f"{ops.POLICY_FIELD}{standard['id']}": "on"}  # fmt: skip
    status, _, _ = post(shop, edit, cookie, both, edit)
    assert status == 303
    saved = must(admin(shop, "GET", f"/v1/admin/discount-codes/{made['id']}"), 200)["code"]
    assert sorted(saved["applies_to_policy_ids"]) == sorted([yearly["id"], standard["id"]])
    _, _, listed = fetch(shop, "GET", "/admin/codes", cookie)  # both named in the list
    assert re.search(rf"{product} · (standard, yearly|yearly, standard)</td>", listed)
    status, _, _ = post(shop, edit, cookie, {"amount": "10"}, edit)
    assert status == 303
    saved = must(admin(shop, "GET", f"/v1/admin/discount-codes/{made['id']}"), 200)["code"]
    assert (saved["applies_to_policy_id"], saved["applies_to_policy_ids"]) == (None, [])


def _facts(body: str) -> dict[str, str]:
    """The text of each `fact-<field>` element of a license page, by field."""
    found = re.findall(r'id="fact-([a-z_]+)"(?: [^>]*value="([^"]*)")?[^>]*>([^<]*)', body)
    return {name: html.unescape(value or text) for name, value, text in found}


def test_the_license_page_shows_every_field_the_api_answers(shop, cookie):
    # Found: the page left out the policy's name and the suspension's reason. The key is
    # shown whole only once, when issued (`test_console`): here its first characters.
    product = make_product(shop)
    issued = must(admin(shop, "POST", "/v1/admin/licenses", {
        "product_slug": product, "policy_slug": "standard", "buyer_email": "kim@example.com",
        "note": "bought at the fair", "fingerprint": "fp-kim", "grace_seconds": 3 * 86400,
        "expires_at": "2031-01-31T00:00:00Z", "is_trial": True,
    }), 200)  # fmt: skip
    page = f"/admin/licenses/{issued['license_id']}"
    post(shop, f"{page}/suspend", cookie, {"reason": "chargeback opened"}, page)
    answered = must(admin(shop, "GET", f"/v1/admin/licenses/{issued['license_id']}"), 200)
    answered = answered.get("license", answered)
    _, _, body = fetch(shop, "GET", page, cookie)
    facts = _facts(body)
    not_yet = {"revoked_at", "revocation_reason"}  # shown once revoked (below)
    unshown = sorted(set(answered) - not_yet - facts.keys())
    assert unshown == [], f"the API answers {unshown}: show each on license.html as fact-<field>"
    assert facts["license_key"] == f"{answered['license_key'][:16]}…"
    shown = ("id", "policy_name", "buyer_email", "note", "expires_at",
             "suspended_at", "suspension_reason", "fingerprint_hash", "invoice_id")  # fmt: skip
    for name in shown:
        assert (answered[name] or "none") in (facts[name] or "none"), name
    assert f'href="/admin/products/{answered["product_id"]}"' in body

    post(shop, f"{page}/revoke", cookie, {"reason": "refunded"}, page)
    facts = _facts(fetch(shop, "GET", page, cookie)[2])
    assert facts["revocation_reason"] == "refunded" and facts["revoked_at"].startswith("20")


def test_a_license_moves_to_another_policy_of_its_product(shop, cookie):
    # Found: the API's change-tier (a comp, with no payment provider) had no console form.
    product = make_product(shop)
    body = {"product_slug": product, "slug": "pro", "name": "Pro", "max_machines": 5}
    must(admin(shop, "POST", "/v1/admin/policies", body), 200)
    issued = must(admin(shop, "POST", "/v1/admin/licenses", {"product_slug": product}), 200)
    page = f"/admin/licenses/{issued['license_id']}"
    _, _, shown = fetch(shop, "GET", page, cookie)
    assert '<option value="pro">pro</option>' in shown
    assert '<option value="standard">' not in shown  # its own policy is not offered

    before = db_dump(shop)
    form = {"to_policy_slug": "no-such", "reason": "upgrade paid by bank transfer"}
    status, _, refused = post(shop, f"{page}/change-tier", cookie, form, page)
    assert status == 404 and db_dump(shop) == before
    assert "no-such" in html.unescape(refused)

    form = {**form, "to_policy_slug": "pro"}
    status, headers, _ = post(shop, f"{page}/change-tier", cookie, form, page)
    assert status == 303 and headers["Location"] == f"{page}?done=change-tier"
    moved = must(admin(shop, "GET", f"/v1/admin/licenses/{issued['license_id']}"), 200)
    moved = moved.get("license", moved)
    assert (moved["policy_slug"], moved["max_machines"]) == ("pro", 5)
    answer = must(shop.request("POST", "/v1/validate", {"key": issued["license_key"]}), 200)
    assert answer["ok"] is True
    entries = must(admin(shop, "GET", f"/v1/admin/audit?subject=license:{moved['id']}"), 200)
    (comp,) = [e for e in entries["entries"] if e["action"] == "license.change_tier.comp"]
    assert comp["actor"] == "console"


def test_a_machine_is_deactivated_with_a_reason_asked_on_the_confirmation(shop, cookie):
    # Found: the API takes a reason for freeing a seat; the console had nowhere to give one.
    issued = must(admin(shop, "POST", "/v1/admin/licenses", {"product_slug": make_product(shop)}),
                  200)  # fmt: skip
    machine = {"key": issued["license_key"], "fingerprint": unique("fp"), "hostname": "old-pc"}
    machine_id = must(shop.request("POST", "/v1/machines/activate", machine), 200)["machine_id"]
    confirm = f"/admin/machines/{machine_id}/deactivate"
    _, _, page = fetch(shop, "GET", confirm, cookie)
    assert '<input id="f-reason" name="reason" type="text" value="">' in page
    status, _, _ = post(shop, confirm, cookie, {"reason": "laptop stolen"}, confirm)
    assert status == 303
    trail = must(admin(shop, "GET", f"/v1/admin/audit?subject=machine:{machine_id}"), 200)
    details = [e["detail"] for e in trail["entries"] if e["action"].endswith("deactivate")]
    assert details and details[0].get("reason") == "laptop stolen", trail
