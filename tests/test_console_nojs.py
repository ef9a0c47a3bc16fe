"""A seller's day in the console on a phone with JavaScript off: Debian's Chromium (Playwright)
at 375 px, against the real daemon. Each task is reached from the Overview by clicking links
and buttons, at most three clicks; only the copy buttons need a script (the key is selectable
without it). Screenshots go where `test_console.shoot` puts them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.daemon_proc import DaemonProc
from tests.test_api_support import admin, issue, must
from tests.test_console import (
    PASSWORD,
    PHONE,
    chromium,
    screens,  # noqa: F401  (the screenshots' folder fixture)
    shoot,
    sign_in,
    submit,
)

MOST_CLICKS = 3


@pytest.fixture
def phone_without_js(tmp_path) -> Iterator:
    with chromium(tmp_path / "chromium-profile", viewport=PHONE, java_script_enabled=False) as c:
        yield c.new_page()


def fill(page, **fields: str) -> None:
    """Type each value into the form field of that name."""
    for name, value in fields.items():
        page.fill(f"#f-{name}", value)


def reach(page, url: str, *clicks: str) -> None:
    """From the Overview, click each selector in turn (each one loads a page)."""
    assert len(clicks) <= MOST_CLICKS, clicks
    page.goto(f"{url}/admin/")
    for selector in clicks:
        submit(page, selector)


def nav(label: str) -> str:
    return f"nav.nav a:text-is('{label}')"


@pytest.mark.browser
def test_a_sellers_day_on_a_phone_without_javascript(tmp_path, phone_without_js, screens):  # noqa: F811
    page = phone_without_js
    with DaemonProc(tmp_path, env={"KEYSMITH_CONSOLE_PASSWORD": PASSWORD}) as d:
        d.wait_for("serving")
        sign_in(page, d.url)

        # A product priced in sats and shown in USD; a yearly policy with its own shown price.
        reach(page, d.url, nav("Products"))
        fill(page, slug="studio", name="Studio", price_sats="50000", price_currency="USD",
             price_value="2999")  # fmt: skip
        submit(page, "form[action='/admin/products'] button[type=submit]")
        assert "Product created." in page.inner_text("main")

        reach(page, d.url, nav("Policies"))
        page.select_option("#f-product_slug", "studio")
        fill(page, slug="yearly", name="Yearly", price_sats="400000", price_currency="USD",
             price_value="24900", duration_days="365", grace_days="7")  # fmt: skip
        page.check("#f-is_default")
        submit(page, "#new-policy button[type=submit]")
        row = page.inner_text("#policies tbody tr")
        assert "400000 sats" in row and "24900 USD" in row and "7 days" in row, row
        shoot(page, screens, "nojs-policies")

        # The policy's price edited (2 clicks).
        reach(page, d.url, nav("Policies"), "#policies a:text('Edit')")
        assert page.input_value("#f-price_value") == "24900"
        page.fill("#f-price_value", "19900")
        submit(page, "#edit button[type=submit]")
        assert "19900 USD" in page.inner_text("#policies")

        # Issued to a buyer, found by the email, opened (2 clicks and a search).
        reach(page, d.url, nav("Licenses"))
        page.select_option("#f-product_slug", "studio")
        page.fill("#f-buyer_email", "ann@example.com")
        submit(page, "#issue button[type=submit]")
        key = page.input_value("#issued-key")
        assert key.startswith("LIC")
        page.click("#copy-key")  # no script runs it: the key stays there to select
        assert page.inner_text("#copy-key") == "Copy"
        reach(page, d.url, nav("Licenses"))
        page.fill("#q", "ann@example.com")
        submit(page, ".search button[type=submit]")
        submit(page, "#licenses a")
        assert page.inner_text("#fact-license_key") == f"{key[:16]}…"
        license_url = page.url

        # Moved to another policy as a comp (the upgrade was paid some other way).
        monthly = {"product_slug": "studio", "slug": "monthly", "name": "Monthly"}
        must(admin(d, "POST", "/v1/admin/policies", monthly), 200)
        page.reload()
        page.select_option("#f-to_policy_slug", "monthly")
        page.fill("#f-tier-reason", "paid by bank transfer")
        submit(page, "#change-tier button[type=submit]")
        assert "License moved" in page.inner_text("main")
        assert page.inner_text("#fact-policy_name") == "Monthly"

        # Suspended with a reason, unsuspended, revoked after the confirmation (3 clicks).
        page.fill("#f-suspend-reason", "chargeback opened")
        submit(page, "button:text-is('Suspend')")
        assert page.inner_text("#fact-suspension_reason") == "chargeback opened"
        submit(page, "button:text-is('Unsuspend')")
        page.fill("#f-reason", "refund")
        submit(page, "form.revoke button[type=submit]")
        assert "cannot be undone" in page.inner_text("#confirm")
        submit(page, "#confirm-button")
        assert page.inner_text("#license-status") == "revoked"
        shoot(page, screens, "nojs-license")
        assert page.url.split("?")[0] == license_url.split("?")[0]

        # A 12.5 % code for the yearly policy only, by its checkbox; then disabled (3 clicks).
        reach(page, d.url, nav("Discount codes"))
        page.fill("#f-code", "SPRING-SALE")
        page.select_option("#f-kind", "percent")
        page.fill("#f-amount", "12.5")
        page.select_option("#f-product_slug", "studio")
        page.check("label:text('studio · yearly (Yearly)')")
        shoot(page, screens, "nojs-code-form")
        submit(page, "form[action='/admin/codes'] button[type=submit]")
        codes = page.inner_text("#codes")
        assert "12.5 %" in codes and "yearly" in codes, codes
        reach(page, d.url, nav("Discount codes"), "#codes a:text('Disable…')", "#confirm-button")
        assert "disabled" in page.inner_text("#codes")

        # A machine deactivated after the confirmation (3 clicks).
        other = issue(d, "studio")
        machine = {"key": other["license_key"], "fingerprint": "fp-1", "hostname": "ann-mac"}
        must(d.request("POST", "/v1/machines/activate", machine), 200)
        reach(page, d.url, nav("Machines"), "#machine-list a:text('Deactivate…')")
        assert "ann-mac" in page.inner_text("#confirm")
        submit(page, "#confirm-button")
        listed = must(admin(d, "GET", "/v1/admin/machines?include_inactive=true"), 200)
        assert [m["active"] for m in listed["machines"]] == [False]

        # Revenue, and the audit log filtered by who acted (1 click and a filter).
        reach(page, d.url, nav("Revenue"))
        assert "Total" in page.inner_text("#revenue-summary")
        reach(page, d.url, nav("Audit log"))
        page.select_option("#actor", "console")
        submit(page, "#audit-filter button[type=submit]")
        trail = page.inner_text("#audit")
        assert "license.revoke" in trail and "license.suspend" in trail
        shoot(page, screens, "nojs-audit")

        # The product deactivated, then the policy archived (2 clicks each).
        reach(page, d.url, nav("Products"), "#products button:text-is('Deactivate')")
        assert "Product inactive" in page.inner_text("main")
        reach(page, d.url, nav("Policies"), "#policies button:text-is('Archive')")
        assert "Policy archived" in page.inner_text("main")
