"""The seller's console seen from HTTP alone (no browser), against the real daemon: each test
tells a defect a seller met in a day's work and would have caught it (the browser walk is in
`test_console.py`)."""

from __future__ import annotations

import hashlib
import html
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import closing

import msgspec
import pytest

from daemon.licensing import models
from tests.daemon_proc import DaemonProc
from tests.receiver import ALLOW_LOOPBACK, Receiver
from tests.test_api_support import admin, db_dump, issue, make_product, must, read_db, unique
from tests.test_console_security import OPENER, PASSWORD, csrf_of, fetch, session_cookie


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Iterator[DaemonProc]:
    # No limit on public writes: the machines list is paged over 200 activations; webhooks
    # may go to a receiver on loopback.
    env = {
        "KEYSMITH_CONSOLE_PASSWORD": PASSWORD,
        "KEYSMITH_WRITE_RATE_LIMIT": "0",
        **ALLOW_LOOPBACK,
    }
    with DaemonProc(tmp_path_factory.mktemp("seller"), env=env) as d:
        d.wait_for("serving")
        yield d


@pytest.fixture(scope="module")
def cookie(shop) -> str:
    return session_cookie(shop)


def post(d: DaemonProc, path: str, cookie: str, form: dict[str, str], csrf_from: str):
    return fetch(d, "POST", path, cookie, {"csrf": csrf_of(d, csrf_from, cookie), **form})


def error_of(body: str, field: str) -> str | None:
    found = re.search(rf'<p class="error" id="e-{field}" role="alert">([^<]*)</p>', body)
    return html.unescape(found[1]) if found else None


def value_of(body: str, field: str) -> str:
    found = re.search(rf'id="f-{field}" name="{field}" type="[a-z]+" value="([^"]*)"', body)
    assert found is not None, field
    return html.unescape(found[1])


def test_validations_today_counts_validations(shop, cookie):
    # Found: the overview said 0 after a day of validations (the counter was never called).
    def shown() -> int:
        _, _, body = fetch(shop, "GET", "/admin/", cookie)
        found = re.search(r'Validations today</span><span class="value">(\d+)<', body)
        assert found is not None
        return int(found[1])

    key = issue(shop, make_product(shop))["license_key"]
    before = shown()
    for _ in range(3):
        must(shop.request("POST", "/v1/validate", {"key": key}), 200)
    must(shop.request("POST", "/v1/validate", {"key": "LIC1-not-a-key"}), 200)
    assert shown() == before + 4


def test_a_license_is_found_by_the_buyer_email_it_was_issued_with(shop, cookie):
    # Found: the search box promised "buyer email" but read only invoices' emails.
    email = f"{unique('buyer')}@example.com"
    issued = issue(shop, make_product(shop), buyer_email=email)
    _, _, body = fetch(shop, "GET", f"/admin/licenses?q={email.upper()}", cookie)
    assert f"/admin/licenses/{issued['license_id']}" in body
    _, _, detail = fetch(shop, "GET", f"/admin/licenses/{issued['license_id']}", cookie)
    assert f'id="fact-buyer_email">{email}<' in detail


def test_a_policy_with_term_grace_and_price_from_the_console(shop, cookie):
    # Found: grace could not be set ("must be an integer, got a string"), nor the price shown.
    product = make_product(shop)
    form = {
        "product_slug": product, "slug": "monthly", "name": "Monthly", "price_sats": "21000",
        "duration_days": "30", "grace_days": "7", "max_machines": "2", "public": "on",
    }  # fmt: skip
    status, _, body = post(shop, "/admin/policies", cookie, form, "/admin/policies")
    assert status == 303, body[:2000]
    policies = must(admin(shop, "GET", f"/v1/admin/policies?product_slug={product}"), 200)
    (made,) = [p for p in policies["policies"] if p["slug"] == "monthly"]
    assert (made["duration_seconds"], made["grace_seconds"]) == (30 * 86400, 7 * 86400)
    assert made["price_sats_override"] == 21000

    # Edited here: a new price; emptied, it follows the product's again.
    edit = f"/admin/policies/{made['id']}"
    _, _, page = fetch(shop, "GET", edit, cookie)
    assert value_of(page, "grace_days") == "7" and value_of(page, "price_sats") == "21000"
    edited = {**form, "price_sats": "25000", "metadata": '{"highlight": "Best value"}'}
    status, _, _ = post(shop, edit, cookie, edited, edit)
    assert status == 303
    again = must(admin(shop, "GET", f"/v1/admin/policies?product_slug={product}"), 200)
    (saved,) = [p for p in again["policies"] if p["slug"] == "monthly"]
    assert (saved["price_sats_override"], saved["grace_seconds"]) == (25000, 7 * 86400)
    assert saved["metadata"] == {"highlight": "Best value"}

    # An issue to a buyer email: shown on the license with its grace.
    email = f"{unique('b')}@example.com"
    issue_form = {"product_slug": product, "policy_slug": "monthly", "buyer_email": email}
    status, _, _ = post(shop, "/admin/licenses", cookie, issue_form, "/admin/licenses")
    assert status == 303
    (license_row,) = must(admin(shop, "GET", f"/v1/admin/licenses?q={email}"), 200)["licenses"]
    assert license_row["grace_seconds"] == 7 * 86400


def test_form_errors_are_in_the_forms_units_next_to_each_field_all_at_once(shop, cookie):
    # Found: percent 150 said "basis points ... got 15000", 12.5 % could not be entered,
    # -3 days named 'duration_seconds', and only the first error of a submit was shown.
    product = make_product(shop)
    before = db_dump(shop)
    bad_policy = {
        "product_slug": product, "slug": "Bad Slug", "name": "", "duration_days": "-3",
        "grace_days": "x", "max_machines": "2", "metadata": "[1]",
    }  # fmt: skip
    status, _, body = post(shop, "/admin/policies", cookie, bad_policy, "/admin/policies")
    assert status == 400
    assert error_of(body, "duration_days") == (
        "Must be a whole number of days from 0 to 36600; got '-3'."
    )
    assert "whole number of days" in (error_of(body, "grace_days") or "")
    assert error_of(body, "slug") is not None and error_of(body, "name") is not None
    assert error_of(body, "metadata") == (
        'Must be a JSON object, like {"tier": "pro"}, not a list or a value.'
    )
    assert value_of(body, "duration_days") == "-3" and value_of(body, "slug") == "Bad Slug"

    code = unique("CODE").upper()
    form = {"code": code, "kind": "percent", "amount": "150", "max_redemptions": "0"}
    status, _, body = post(shop, "/admin/codes", cookie, form, "/admin/codes")
    assert status == 400
    assert error_of(body, "amount") == (
        "A percent must be from 0.01 to 100, with at most two decimals (12.5 for 12.5 %); "
        "got '150'."
    )
    assert error_of(body, "max_redemptions") is not None  # both, at once
    assert value_of(body, "amount") == "150"
    assert db_dump(shop) == before

    # An unknown product goes next to the product field, not above the form.
    form = {"product_slug": "no-such-product", "slug": "x", "name": "X"}
    status, _, body = post(shop, "/admin/policies", cookie, form, "/admin/policies")
    assert (
        status == 404 and error_of(body, "product_slug") == "There is no product 'no-such-product'"
    )

    form = {"code": code, "kind": "percent", "amount": "12.5"}
    status, _, _ = post(shop, "/admin/codes", cookie, form, "/admin/codes")
    assert status == 303
    codes = must(admin(shop, "GET", "/v1/admin/discount-codes?include_inactive=true"), 200)
    assert [c["amount"] for c in codes["codes"] if c["code"] == code] == [1250]
    _, _, listed = fetch(shop, "GET", "/admin/codes", cookie)
    assert "12.5 %" in listed


def test_a_bad_scope_is_named_in_the_forms_words_with_the_other_errors(shop, cookie):
    # Found: a bad scope showed the model's regex, above the form, alone.
    before = db_dump(shop)
    form = {"label": "", "role": "read-only", "scopes": "licenses:read, all of them"}
    status, _, body = post(shop, "/admin/api-keys", cookie, form, "/admin/api-keys")
    assert status == 400
    scopes = error_of(body, "scopes") or ""
    assert scopes.startswith("'all of them' is not a scope: a scope is a resource, a colon")
    assert "licenses:write" in scopes and "regex" not in body
    assert error_of(body, "label") is not None
    assert db_dump(shop) == before


def test_revoking_asks_first_naming_the_license(shop, cookie):
    # Found: one click on Revoke revoked for good.
    issued = issue(shop, make_product(shop), buyer_email="ann@example.com")
    page = f"/admin/licenses/{issued['license_id']}"
    _, _, body = fetch(shop, "GET", page, cookie)
    assert f'<form method="get" action="{page}/revoke"' in body
    before = db_dump(shop)
    status, _, confirm = fetch(shop, "GET", f"{page}/revoke?reason=chargeback", cookie)
    assert status == 200 and db_dump(shop) == before
    assert f"license {issued['license_id']}" in confirm and "ann@example.com" in confirm
    assert "cannot be undone" in confirm
    assert '<input type="hidden" name="reason" value="chargeback">' in confirm
    status, headers, _ = post(shop, f"{page}/revoke", cookie, {"reason": "chargeback"}, page)
    assert status == 303 and headers["Location"] == f"{page}?done=revoke"
    answer = must(shop.request("POST", "/v1/validate", {"key": issued["license_key"]}), 200)
    assert answer["reason"] == "revoked"


def test_a_form_sent_after_the_session_ended_is_kept_through_sign_in(shop):
    # Found: it said the form "came from another site" and lost what was typed.
    before = db_dump(shop)
    typed = {"slug": "kept-app", "name": "Kept App", "price_sats": "777"}
    headers = {"Origin": shop.url, "Referer": f"{shop.url}/admin/products"}
    request_form = {**typed, "csrf": "from-the-old-session"}
    posted = urllib.request.Request(
        f"{shop.url}/admin/products",
        data=urllib.parse.urlencode(request_form).encode(),
        headers={**headers, "Cookie": "keysmith_console=ended-long-ago"},
    )
    try:
        OPENER.open(posted, timeout=30)
        raise AssertionError("expected the sign-in page")
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read().decode()
    assert status == 401 and "Your session ended" in body and "another site" not in body
    kept = dict(re.findall(r'<input type="hidden" name="(keep:[a-z_]+)" value="([^"]*)">', body))
    assert kept == {f"keep:{k}": v for k, v in typed.items()}
    assert '<input type="hidden" name="back" value="/admin/products">' in body
    assert db_dump(shop) == before

    signin = urllib.request.Request(
        f"{shop.url}/admin/login",
        data=urllib.parse.urlencode(
            {"password": PASSWORD, "back": "/admin/products", **kept}
        ).encode(),
    )
    try:
        answer = OPENER.open(signin, timeout=30)
        status, answer_headers = answer.status, answer.headers
    except urllib.error.HTTPError as e:
        status, answer_headers = e.code, e.headers
    assert status == 303 and answer_headers["Location"] == "/admin/products"
    cookie = answer_headers["Set-Cookie"].split(";", 1)[0]
    _, _, page = fetch(shop, "GET", "/admin/products", cookie)
    assert value_of(page, "slug") == "kept-app" and value_of(page, "price_sats") == "777"
    assert db_dump(shop) == before  # shown again, not sent
    _, _, again = fetch(shop, "GET", "/admin/products", cookie)
    assert 'value="kept-app"' not in again  # once


def test_the_audit_log_names_who_acted_and_filters_by_it(shop, cookie):
    # Found: an API key's writes were logged as "admin", like the console's and the master's.
    body = {"label": "shop-bot", "role": "license-issuer"}
    key = must(admin(shop, "POST", "/v1/admin/api-keys", body), 200)
    bearer = {"Authorization": f"Bearer {key['token']}"}
    product = make_product(shop)
    by_key = must(
        shop.request("POST", "/v1/admin/licenses", {"product_slug": product}, headers=bearer),
        200,
    )
    page = f"/admin/licenses/{by_key['license_id']}"
    post(shop, f"{page}/suspend", cookie, {}, page)

    def actors(query: str) -> list[tuple[str, str]]:
        found = must(admin(shop, "GET", f"/v1/admin/audit?{query}"), 200)
        return [(e["actor"], e["action"]) for e in found["entries"]]

    trail = actors(f"subject=license:{by_key['license_id']}")
    assert trail == [("console", "license.suspend"), (f"api_key:{key['id']}", "license.issue")]
    assert ("master_key", "api_key.create") in actors("actor=master_key")
    assert actors(f"actor=api_key:{key['id']}") == [(f"api_key:{key['id']}", "license.issue")]
    assert {a for a, _ in actors("actor=api_key")} == {f"api_key:{key['id']}"}
    # The console's filter, the key named by its label.
    _, _, listed = fetch(shop, "GET", f"/admin/audit?actor=api_key:{key['id']}", cookie)
    assert "API key &#39;shop-bot&#39; (license-issuer)" in listed
    assert "license.issue" in listed and "license.suspend" not in listed


def test_the_audit_entry_tells_credentials_apart_in_keysats_keys(shop, cookie):
    # Found: Keysat's entry shape (actor_kind, actor_hash, target_kind, target_id, details,
    # occurred_at) was missing; software written against Keysat's audit route read nothing.
    body = {"label": "issuer-bot", "role": "license-issuer"}
    key = must(admin(shop, "POST", "/v1/admin/api-keys", body), 200)
    bearer = {"Authorization": f"Bearer {key['token']}"}
    issued = must(
        shop.request("POST", "/v1/admin/licenses", {"product_slug": make_product(shop)},
                     headers=bearer),
        200,
    )  # fmt: skip
    license_id = issued["license_id"]
    page = f"/admin/licenses/{license_id}"
    post(shop, f"{page}/suspend", cookie, {}, page)
    must(admin(shop, "POST", f"/v1/admin/licenses/{license_id}/unsuspend"), 200)
    must(shop.request("POST", f"/v1/admin/licenses/{license_id}/revoke", {}, headers=bearer), 200)

    status, raw = shop.request("GET", f"/v1/admin/audit?subject=license:{license_id}",
                               headers=shop.admin_headers())  # fmt: skip
    entries = must((status, raw), 200)["entries"]
    keysat = ("actor_kind", "actor_hash", "action", "target_kind", "target_id", "details",
              "occurred_at")  # fmt: skip
    master = hashlib.sha256(shop.env["KEYSMITH_ADMIN_API_KEY"].encode()).hexdigest()
    token = hashlib.sha256(key["token"].encode()).hexdigest()
    assert [tuple(e[k] for k in keysat[:4]) for e in entries] == [
        ("api_key", token, "license.revoke", "license"),
        ("master_key", master, "license.unsuspend", "license"),
        ("console", None, "license.suspend", "license"),
        ("api_key", token, "license.issue", "license"),
    ]
    for entry in entries:
        assert entry["target_id"] == license_id and entry["details"] == entry["detail"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", entry["occurred_at"])
    # Keysmith's own keys are kept: the master key is still `master_key`, the token is nowhere.
    assert [e["actor"] for e in entries][:2] == [f"api_key:{key['id']}", "master_key"]
    answered = json.dumps(raw)
    assert key["token"] not in answered and shop.env["KEYSMITH_ADMIN_API_KEY"] not in answered


def test_the_license_list_says_how_many_and_pages_both_ways(shop, cookie):
    # Found: a next page, but no previous page and no count.
    product, note = make_product(shop), unique("bulk")
    for _ in range(101):
        issue(shop, product, note=note)
    _, _, first = fetch(shop, "GET", f"/admin/licenses?q={note}", cookie)
    assert "Licenses 1–100 of 101" in first and 'rel="prev"' not in first
    assert f'href="/admin/licenses?q={note}&amp;offset=100" rel="next"' in first
    _, _, second = fetch(shop, "GET", f"/admin/licenses?q={note}&offset=100", cookie)
    assert "Licenses 101–101 of 101" in second and 'rel="next"' not in second
    assert f'href="/admin/licenses?q={note}&amp;offset=0" rel="prev"' in second


def _pages(shop: DaemonProc, path: str, cookie: str, what: str = "") -> Iterator[tuple[str, str]]:
    """Each page of a console list from `path` on, following its Next link: (pager, body).
    `what`: the list's name, on a page with several."""
    seen: list[str] = []
    while path:
        _, _, body = fetch(shop, "GET", path, cookie)
        pager = re.search(rf'<p class="pager">(\s*{what}.*?)</p>', body, re.S)
        assert pager is not None, body[-2000:]
        yield " ".join(html.unescape(pager[1]).split()), body
        seen.append(path)
        following = re.search(r'href="([^"]+)" rel="next"', pager[1])
        path = html.unescape(following[1]) if following else ""
        assert path not in seen


def test_the_audit_log_says_how_many_and_pages_both_ways(shop, cookie):
    # Found: older entries only (before_id), no way back but to the newest, and no count.
    body = {"label": unique("pager"), "role": "license-issuer"}
    key = must(admin(shop, "POST", "/v1/admin/api-keys", body), 200)
    bearer = {"Authorization": f"Bearer {key['token']}"}
    product = make_product(shop)
    issued = [
        must(shop.request("POST", "/v1/admin/licenses", {"product_slug": product},
                          headers=bearer), 200)["license_id"]
        for _ in range(101)
    ]  # fmt: skip
    query = f"/admin/audit?action=license.issue&actor=api_key:{key['id']}"
    (first, one), (second, two) = _pages(shop, query, cookie)
    assert first.startswith("Entries 1–100 of 101") and "Previous" not in first
    assert second.startswith("Entries 101–101 of 101") and "Next" not in second
    back = re.search(r'href="([^"]+)" rel="prev"', two)
    assert back is not None and "offset=0" in back[1] and f"api_key:{key['id']}" in back[1]
    # Newest first, each entry once across the two pages.
    shown = re.findall(r'<td data-label="Subject"><code>license:([0-9a-f-]+)</code>', one + two)
    assert shown == issued[::-1]
    # The count follows the filters: the key's one product create is not an issue.
    (alone, _), = _pages(shop, f"/admin/audit?actor=api_key:{key['id']}&action=product.create",
                         cookie)  # fmt: skip
    assert "Entries" not in alone


def test_the_machines_page_says_how_many_and_pages_both_ways(shop, cookie):
    # Found: the newest 200 machines and no more: no next page, no previous page, no count.
    product = make_product(shop, seats=250)
    issued = issue(shop, product)
    made = [
        must(shop.request("POST", "/v1/machines/activate", {
            "key": issued["license_key"], "fingerprint": unique("fp"), "hostname": f"host-{n}",
        }), 200)
        for n in range(203)
    ]  # fmt: skip
    (listed,) = must(admin(shop, "GET", f"/v1/admin/licenses?q={issued['license_id']}"), 200)[
        "licenses"
    ]
    for machine_id in (made[0]["machine_id"], made[1]["machine_id"]):
        must(admin(shop, "POST", f"/v1/admin/machines/{machine_id}/deactivate", {}), 200)
    mine = f"/admin/machines?product={listed['product_id']}"
    (first, _), (second, two) = _pages(shop, mine, cookie)
    assert first.startswith("Machines 1–200 of 203") and "Previous" not in first
    assert second.startswith("Machines 201–203 of 203") and "Next" not in second
    assert re.search(r'href="[^"]*offset=0" rel="prev"', two)
    ((gone, body),) = _pages(shop, f"{mine}&state=deactivated", cookie)
    assert gone.startswith("Machines 1–2 of 2")
    assert sorted(re.findall(r'data-label="Host">(host-\d+)<', body)) == ["host-0", "host-1"]
    (active, _), (rest, _) = _pages(shop, f"{mine}&state=active", cookie)
    assert active.startswith("Machines 1–200 of 201") and rest.startswith("Machines 201–201")


def test_the_webhook_deliveries_say_how_many_and_page_both_ways(shop, cookie):
    # Found: the newest 50 deliveries and no way to the others, nor a count.
    with Receiver() as receiver:
        body = {"url": receiver.url, "event_types": ["license.issued"]}
        endpoint = must(admin(shop, "POST", "/v1/admin/webhook-endpoints", body), 200)
        product = make_product(shop)
        for _ in range(51):
            issue(shop, product)
        (first, one), (second, two) = _pages(shop, "/admin/webhooks", cookie, "Deliveries")
        must(admin(shop, "DELETE", f"/v1/admin/webhook-endpoints/{endpoint['id']}"), 200)
    assert first.startswith("Deliveries 1–50 of 51") and "Previous" not in first
    assert second.startswith("Deliveries 51–51 of 51") and "Next" not in second
    assert re.search(r'href="/admin/webhooks\?offset=0" rel="prev"', two)
    assert len(re.findall(r'<tr class="delivery-', one)) == 50
    assert len(re.findall(r'<tr class="delivery-', two)) == 1


def test_the_lists_shown_whole_say_how_many(shop, cookie):
    # Found: products, policies, codes, webhook endpoints and API keys had no count.
    product = make_product(shop)
    code = {"code": unique("COUNT").upper(), "kind": "percent", "amount": 500,
            "product_slug": product}  # fmt: skip
    must(admin(shop, "POST", "/v1/admin/discount-codes", code), 200)
    must(admin(shop, "POST", "/v1/admin/api-keys", {"label": "counted", "role": "support"}), 200)
    with Receiver() as receiver:
        hook = {"url": receiver.url, "event_types": ["license.issued"]}
        endpoint = must(admin(shop, "POST", "/v1/admin/webhook-endpoints", hook), 200)
        lists = (
            ("/admin/products", "Products", "products"),
            ("/admin/policies", "Policies", "policies"),
            ("/admin/codes", "Codes", "discount_codes"),
            ("/admin/webhooks", "Endpoints", "webhook_endpoints"),
            ("/admin/api-keys", "API keys", "api_keys"),
        )
        for path, what, table in lists:
            with closing(read_db(shop)) as conn:
                (stored,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            ((pager, _),) = _pages(shop, path, cookie, what)
            assert pager == f"{what} 1–{stored} of {stored}", path
        must(admin(shop, "DELETE", f"/v1/admin/webhook-endpoints/{endpoint['id']}"), 200)


def test_a_refused_row_action_says_why_once_at_the_top(shop, cookie):
    # A product with a license cannot be deleted: the confirmation's button is refused with
    # the reason at the top of the list, once, and nothing is deleted.
    product = make_product(shop)
    issue(shop, product)
    (row,) = [
        p
        for p in must(admin(shop, "GET", "/v1/admin/products"), 200)["products"]
        if p["slug"] == product
    ]
    delete = f"/admin/products/{row['id']}/delete"
    _, _, confirm = fetch(shop, "GET", delete, cookie)
    assert f"product &#39;{product}&#39;" in confirm and "deleted for good" in confirm
    before = db_dump(shop)
    status, _, body = post(shop, delete, cookie, {}, delete)
    assert status == 409 and db_dump(shop) == before
    assert body.count("has licenses, invoices or codes") == 1
    assert 'id="row-error"' in body


def test_revenue_per_month_and_product(shop, cookie):
    # /admin/revenue was a 404; the API's summary, and each product's sales per month.
    product, code = make_product(shop), unique("FREE").upper()
    body = {"code": code, "kind": "free_license", "product_slug": product}
    must(admin(shop, "POST", "/v1/admin/discount-codes", body), 200)
    must(shop.request("POST", "/v1/redeem", {"product": product, "code": code}), 200)
    summary = must(admin(shop, "GET", "/v1/admin/revenue/summary"), 200)
    status, _, page = fetch(shop, "GET", "/admin/revenue", cookie)
    assert status == 200
    assert f"<dt>Total</dt><dd>{summary['total_sats']} sats</dd>" in page
    month = re.search(
        rf'<td data-label="Month">(\d{{4}}-\d\d)</td><td data-label="Product"><code>{product}'
        r'</code></td><td data-label="Sats">0</td><td data-label="Invoices">1</td>',
        page,
    )
    assert month is not None, page[-3000:]


def test_the_audit_log_filters_by_action(shop, cookie):
    product = make_product(shop)
    issued = issue(shop, product)
    page = f"/admin/licenses/{issued['license_id']}"
    post(shop, f"{page}/suspend", cookie, {}, page)
    _, _, listed = fetch(shop, "GET", "/admin/audit?action=license.suspend", cookie)
    actions = set(re.findall(r'<td data-label="Action"><code>([a-z_.]+)</code>', listed))
    assert actions == {"license.suspend"}


def test_a_bad_filter_is_said_not_a_server_error(shop, cookie):
    for path in ("/admin/machines?product=nope", "/admin/licenses?product=nope"):
        status, _, body = fetch(shop, "GET", path, cookie)
        assert status == 200 and "'product_id' must be" in html.unescape(body), path


def test_a_code_is_edited_with_every_field_the_api_takes(shop, cookie):
    product = make_product(shop)
    for slug in ("monthly", "yearly"):
        body = {"product_slug": product, "slug": slug, "name": slug}
        must(admin(shop, "POST", "/v1/admin/policies", body), 200)
    code = unique("EDIT").upper()
    body = {"code": code, "kind": "percent", "amount": 1000, "product_slug": product}
    made = must(admin(shop, "POST", "/v1/admin/discount-codes", body), 200)
    page = f"/admin/codes/{made['id']}"
    _, _, shown = fetch(shop, "GET", page, cookie)
    assert value_of(shown, "amount") == "10"
    listed = must(admin(shop, "GET", f"/v1/admin/policies?product_slug={product}"), 200)
    (yearly,) = [p["id"] for p in listed["policies"] if p["slug"] == "yearly"]
    form = {
        "amount": "12.5", f"policy-{yearly}": "on", "max_redemptions": "5",
        "expires_at": "2031-01-31T00:00:00Z", "description": "launch", "referrer_label": "blog",
    }  # fmt: skip
    status, _, body_text = post(shop, page, cookie, form, page)
    assert status == 303, body_text[:2000]
    saved = must(admin(shop, "GET", f"/v1/admin/discount-codes/{made['id']}"), 200)
    saved = saved.get("code", saved)
    assert (saved["amount"], saved["max_uses"], saved["referrer_label"]) == (1250, 5, "blog")
    assert saved["expires_at"].startswith("2031-01-31") and saved["description"] == "launch"
    assert saved["applies_to_policy_id"] == yearly
    _, _, again = fetch(shop, "GET", page, cookie)
    assert f'name="policy-{yearly}" type="checkbox" checked>' in again


def test_a_product_is_edited_deactivated_and_deleted_when_unused(shop, cookie):
    slug = unique("tool")
    body = {"slug": slug, "name": "Tool", "price_sats": 1000}
    made = must(admin(shop, "POST", "/v1/admin/products", body), 200)
    page = f"/admin/products/{made['id']}"
    _, _, shown = fetch(shop, "GET", page, cookie)
    assert value_of(shown, "name") == "Tool" and value_of(shown, "price_sats") == "1000"
    form = {"name": "Tool Pro", "price_sats": "2500", "entitlements_catalog": "pro: Pro"}
    status, _, _ = post(shop, page, cookie, form, page)
    assert status == 303

    def listed() -> dict:
        products = must(admin(shop, "GET", "/v1/admin/products"), 200)["products"]
        return next(p for p in products if p["slug"] == slug)

    saved = listed()
    assert (saved["name"], saved["price_sats"]) == ("Tool Pro", 2500)
    assert [e["slug"] for e in saved["entitlements_catalog"]] == ["pro"]
    post(shop, f"{page}/deactivate", cookie, {}, "/admin/products")
    assert listed()["active"] is False
    status, headers, _ = post(shop, f"{page}/delete", cookie, {}, f"{page}/delete")
    assert status == 303 and headers["Location"] == "/admin/products?done=product-deleted"
    products = must(admin(shop, "GET", "/v1/admin/products"), 200)["products"]
    assert slug not in {p["slug"] for p in products}


@pytest.mark.parametrize(
    ("path", "form", "field", "said"),
    [
        ("/admin/codes", {"kind": "percent", "amount": "10", "max_redemptions": "0"},
         "max_redemptions", "'Redemptions allowed' must be"),
        ("/admin/policies", {"slug": "p", "name": "P", "price_sats": "-1"},
         "price_sats", "'Price (sats)' must be"),
        ("/admin/policies", {"slug": "p", "name": "P", "duration_days": "-3"},
         "duration_days", "Must be a whole number of days"),
        ("/admin/policies", {"slug": "p", "name": "P", "grace_days": "99999999"},
         "grace_days", "Must be a whole number of days"),
    ],
)  # fmt: skip
def test_a_renamed_fields_error_uses_the_forms_label_and_units(
    shop, cookie, path, form, field, said
):
    # Found: max_redemptions 0 said "'max_uses' must be ...", a negative price
    # "'price_sats_override' must be ...": names the seller never saw on the form.
    made = {"code": unique("CODE").upper()} if path == "/admin/codes" else {}
    form = {**made, "product_slug": make_product(shop), **form}
    before = db_dump(shop)
    status, _, body = post(shop, path, cookie, form, path)
    assert status == 400
    message = error_of(body, field) or ""
    assert message.startswith(said), message
    assert not re.search(r"max_uses|price_sats_override|_seconds", message), message
    assert db_dump(shop) == before


def test_deactivating_a_machine_asks_first_naming_it(shop, cookie):
    # Found: one click on Deactivate on the machines or license page deactivated at once.
    issued = issue(shop, make_product(shop))
    machine = {"key": issued["license_key"], "fingerprint": unique("fp"), "hostname": "studio"}
    must(shop.request("POST", "/v1/machines/activate", machine), 200)
    page = f"/admin/licenses/{issued['license_id']}"
    _, _, body = fetch(shop, "GET", page, cookie)
    found = re.search(r'href="(/admin/machines/([0-9a-f-]+)/deactivate)"', body)
    assert found is not None, "no link to the confirmation"
    before = db_dump(shop)
    status, _, confirm = fetch(shop, "GET", found[1], cookie)
    assert status == 200 and db_dump(shop) == before
    assert f"machine studio of license {issued['license_id']}" in confirm
    status, headers, _ = post(shop, found[1], cookie, {}, page)
    assert status == 303 and headers["Location"] == f"{page}?done=deactivate"
    machines = must(
        admin(
            shop,
            "GET",
            f"/v1/admin/machines?license_id={issued['license_id']}&include_inactive=true",
        ),
        200,
    )
    assert [m["active"] for m in machines["machines"]] == [False]


# The form's name for an API field where they differ (the form says days and redemptions).
FORM_NAMES = {"grace_seconds": "grace_days", "duration_seconds": "duration_days"}


def form_fields(shop, cookie, page: str) -> set[str]:
    _, _, body = fetch(shop, "GET", page, cookie)
    return set(re.findall(r'<(?:input|select|textarea)[^>]* name="([a-z_]+)"', body))


def test_the_issue_form_offers_every_field_the_api_takes(shop, cookie):
    # Found: a trial license could be issued by the API (`is_trial`) but not from the console.
    wanted = {FORM_NAMES.get(f.name, f.name) for f in msgspec.structs.fields(models.LicenseIssue)}
    assert wanted <= form_fields(shop, cookie, "/admin/licenses")

    email = f"{unique('trial')}@example.com"
    form = {"product_slug": make_product(shop), "buyer_email": email, "is_trial": "yes"}
    status, _, body = post(shop, "/admin/licenses", cookie, form, "/admin/licenses")
    assert status == 303, body[:2000]
    (issued,) = must(admin(shop, "GET", f"/v1/admin/licenses?q={email}"), 200)["licenses"]
    assert issued["is_trial"] is True

    before = db_dump(shop)
    form = {**form, "buyer_email": f"x{email}", "is_trial": "maybe"}
    status, _, body = post(shop, "/admin/licenses", cookie, form, "/admin/licenses")
    assert status == 400 and db_dump(shop) == before
    assert error_of(body, "is_trial") == "Must be yes, no or empty (the policy's); got 'maybe'."


def test_a_product_is_priced_in_a_currency_from_the_console(shop, cookie):
    # Found: the API takes Keysat's price_currency / price_value; the console had no field.
    create = {f.name for f in msgspec.structs.fields(models.ProductCreate)}
    assert create <= form_fields(shop, cookie, "/admin/products")
    slug = unique("priced")
    form = {"slug": slug, "name": "Priced", "price_sats": "20000", "price_currency": "usd",
            "price_value": "1299"}  # fmt: skip
    status, _, body = post(shop, "/admin/products", cookie, form, "/admin/products")
    assert status == 303, body[:2000]
    (made,) = [p for p in must(admin(shop, "GET", "/v1/admin/products"), 200)["products"]
               if p["slug"] == slug]  # fmt: skip
    assert (made["price_sats"], made["price_currency"], made["price_value"]) == (20000, "USD", 1299)
    _, _, listed = fetch(shop, "GET", "/admin/products", cookie)
    assert "(shown as 1299 USD, smallest unit)" in listed

    # The slug is fixed, `active` has its own buttons: the edit form offers the rest.
    page = f"/admin/products/{made['id']}"
    update = {f.name for f in msgspec.structs.fields(models.ProductUpdate)} - {"active"}
    assert update <= form_fields(shop, cookie, page)
    _, _, edit = fetch(shop, "GET", page, cookie)
    assert (value_of(edit, "price_currency"), value_of(edit, "price_value")) == ("USD", "1299")
    form = {"name": "Priced", "price_sats": "21000", "price_currency": "EUR", "price_value": "1199"}
    status, _, body = post(shop, page, cookie, form, page)
    assert status == 303, body[:2000]
    (made,) = [p for p in must(admin(shop, "GET", "/v1/admin/products"), 200)["products"]
               if p["slug"] == slug]  # fmt: skip
    assert (made["price_sats"], made["price_currency"], made["price_value"]) == (21000, "EUR", 1199)


def test_the_machines_page_filters_by_product_and_refuses_an_unknown_state(shop, cookie):
    # Found: `state=gone` listed every machine as if no state were asked.
    hosts = {}
    for name in ("mine", "theirs"):
        product = make_product(shop)
        issued = issue(shop, product)
        machine = {"key": issued["license_key"], "fingerprint": unique("fp"), "hostname": name}
        must(shop.request("POST", "/v1/machines/activate", machine), 200)
        hosts[name] = issued["license_id"]
    (mine,) = must(admin(shop, "GET", f"/v1/admin/licenses?q={hosts['mine']}"), 200)["licenses"]
    _, _, body = fetch(shop, "GET", f"/admin/machines?product={mine['product_id']}", cookie)
    assert hosts["mine"][:8] in body and hosts["theirs"][:8] not in body

    _, _, body = fetch(shop, "GET", "/admin/machines?state=gone", cookie)
    assert "There is no machine state 'gone': choose active, deactivated" in html.unescape(body)
    assert hosts["mine"][:8] not in body and "No machine matches." in body
