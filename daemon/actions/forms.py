"""The licensing actions' declarations: names, descriptions and input forms.

Field ids are the admin API's field names where one exists, so a seller who knows the API
knows the forms. Limits are the admin API's limits (`daemon.licensing.inputs`).
"""

from __future__ import annotations

from daemon.actions import ops_licensing as ops
from daemon.actions.registry import Action, Field, number, select, text, toggle
from daemon.licensing import inputs
from daemon.licensing.service import DISCOUNT_KINDS, LICENSE_STATUSES

SLUG = "lowercase letters, digits, '-' and '_'"
EXPIRES = "An ISO 8601 time with its timezone, e.g. 2027-01-31T00:00:00Z."


def _product(required: bool, what: str) -> Field:
    return text(
        "product",
        "Product",
        f"The product's slug ({SLUG}). {what}",
        required=required,
        max_length=64,
        placeholder="my-app",
    )


def _license_id() -> Field:
    return text(
        "license_id",
        "License id",
        "The license's id, as the action 'Search licenses' shows it.",
        required=True,
        max_length=36,
    )


PRODUCTS = "Products"
LICENSES = "Licenses"
CODES = "Discount codes"

ACTIONS = (
    Action(
        "create-product",
        "Create a product",
        "Adds a product you sell licenses for.",
        ops.create_product,
        group=PRODUCTS,
        input=(
            text(
                "slug",
                "Slug",
                f"Its short name in keys and API calls ({SLUG}).",
                required=True,
                max_length=64,
                placeholder="my-app",
            ),
            text("name", "Name", "The name customers see.", required=True),
            text(
                "description",
                "Description",
                "Shown to customers.",
                area=True,
                max_length=inputs.MAX_TEXT,
            ),
            number(
                "price_sats",
                "Price (sats)",
                "The price of a license, in satoshis.",
                minimum=0,
                maximum=inputs.MAX_SATS,
                required=True,
            ),
        ),
    ),
    Action(
        "create-policy",
        "Create a policy",
        "Adds a licensing policy to a product: duration, machines per license, trial.",
        ops.create_policy,
        group=PRODUCTS,
        input=(
            _product(True, "The policy belongs to it."),
            text(
                "slug",
                "Slug",
                f"The policy's short name ({SLUG}).",
                required=True,
                max_length=64,
                placeholder="yearly",
            ),
            text("name", "Name", "The name customers see.", required=True),
            number(
                "price_sats",
                "Price (sats)",
                "The price with this policy, in satoshis. Empty: the product's price, which the "
                "policy then follows when it changes.",
                minimum=0,
                maximum=inputs.MAX_SATS,
            ),
            number(
                "duration_days",
                "Duration (days)",
                "How long a license lasts. Empty: it never expires.",
                minimum=1,
                maximum=36_500,
            ),
            number(
                "max_machines",
                "Machines per license",
                "How many machines one license may be active on at once.",
                minimum=1,
                maximum=10_000,
                default=1,
            ),
            text(
                "entitlements",
                "Entitlements",
                "Comma-separated entitlement slugs from the product's catalogue. Empty: none.",
                max_length=inputs.MAX_TEXT,
            ),
            toggle("is_trial", "Trial", "Licenses under it are trials.", default=False),
            toggle(
                "is_default",
                "Default policy",
                "Used when a license is issued without a policy.",
                default=False,
            ),
            toggle("is_public", "Public", "Listed to buyers.", default=True),
        ),
    ),
    Action(
        "issue-license",
        "Issue a license",
        "Issues a signed license key for a product. Copy the key and send it to your customer.",
        ops.issue_license,
        group=LICENSES,
        input=(
            _product(True, "The license is for it."),
            text(
                "policy",
                "Policy",
                f"The policy's slug ({SLUG}). Empty: the product's default policy.",
                max_length=64,
            ),
            text(
                "note",
                "Note",
                "For you: who it is for, an order number.",
                area=True,
                max_length=inputs.MAX_TEXT,
            ),
            text(
                "fingerprint",
                "Machine fingerprint",
                "Binds the key to one machine. Empty: any machine.",
                max_length=512,
            ),
            text(
                "expires_at",
                "Expires at",
                f"{EXPIRES} Empty: from the policy's duration.",
                max_length=40,
                placeholder="2027-01-31T00:00:00Z",
            ),
        ),
    ),
    Action(
        "revoke-license",
        "Revoke a license",
        "Revokes a license for good: it stops validating at once.",
        ops.revoke_license,
        warning="A revoked license cannot be reinstated. To pause it, suspend it instead.",
        group=LICENSES,
        input=(
            _license_id(),
            text(
                "reason",
                "Reason",
                "Kept in the license and the audit log.",
                area=True,
                max_length=inputs.MAX_TEXT,
            ),
        ),
    ),
    Action(
        "suspend-license",
        "Suspend a license",
        "Stops a license from validating until you unsuspend it.",
        ops.suspend_license,
        group=LICENSES,
        input=(_license_id(),),
    ),
    Action(
        "unsuspend-license",
        "Unsuspend a license",
        "Lets a suspended license validate again.",
        ops.unsuspend_license,
        group=LICENSES,
        input=(_license_id(),),
    ),
    Action(
        "search-licenses",
        "Search licenses",
        "Finds licenses by key, id, note or buyer email, newest first.",
        ops.search_licenses,
        group=LICENSES,
        input=(
            text(
                "query",
                "Search",
                "Part of a key, an id, a note or an email. Empty: all.",
                max_length=200,
            ),
            select(
                "status",
                "Status",
                "Only licenses in this state.",
                {"any": "Any", **{s: s.capitalize() for s in LICENSE_STATUSES}},
                default="any",
            ),
            number(
                "limit", "At most", "How many licenses to show.", minimum=1, maximum=200, default=25
            ),
        ),
    ),
    Action(
        "list-machines",
        "List a license's machines",
        "Shows the machines a license is activated on.",
        ops.list_machines,
        group=LICENSES,
        input=(
            _license_id(),
            toggle(
                "include_inactive",
                "Include deactivated",
                "Also show machines that were deactivated.",
                default=False,
            ),
        ),
    ),
    Action(
        "deactivate-machine",
        "Deactivate a machine",
        "Frees a license's seat held by a machine (the machine must activate again to use it).",
        ops.deactivate_machine,
        group=LICENSES,
        input=(
            text(
                "machine_id",
                "Machine id",
                "The machine's id, as the action 'List a license's machines' shows it.",
                required=True,
                max_length=36,
            ),
            text("reason", "Reason", "Kept in the audit log.", max_length=200),
        ),
    ),
    Action(
        "create-discount-code",
        "Create a discount code",
        "Creates a code buyers enter for a discount or a free license.",
        ops.create_discount_code,
        group=CODES,
        input=(
            text(
                "code",
                "Code",
                "What buyers type (letters, digits, '-' and '_'). Empty: a random code no one "
                "can guess is made (a short or familiar one giving a free license or a high "
                "discount can be guessed; the result warns of it).",
                max_length=64,
            ),
            select(
                "kind",
                "Kind",
                "What the code gives.",
                {k: k.replace("_", " ").capitalize() for k in DISCOUNT_KINDS},
                default="percent",
            ),
            number(
                "amount",
                "Amount",
                "Percent (1-100), sats off, or the set price in sats; 0 for a free license.",
                minimum=0,
                maximum=inputs.MAX_SATS,
                default=0,
            ),
            _product(False, "Empty: valid for every product."),
            text(
                "policy",
                "Policy",
                f"The policy's slug ({SLUG}); needs a product. Empty: any policy.",
                max_length=64,
            ),
            number(
                "max_redemptions",
                "Uses",
                "How many times it can be redeemed. Empty: no limit.",
                minimum=1,
                maximum=10**9,
            ),
            text("expires_at", "Expires at", f"{EXPIRES} Empty: never.", max_length=40),
            text("note", "Note", "For you.", area=True, max_length=inputs.MAX_TEXT),
        ),
    ),
    Action(
        "disable-discount-code",
        "Disable a discount code",
        "Stops a discount code from being redeemed; past redemptions are kept.",
        ops.disable_discount_code,
        group=CODES,
        input=(
            text(
                "code",
                "Code",
                "The code as buyers type it, or its id.",
                required=True,
                max_length=64,
            ),
        ),
    ),
    Action(
        "audit-log",
        "Audit log",
        "Shows who changed what, newest first: every admin API call and action that wrote.",
        ops.audit_log,
        input=(
            text(
                "action", "Kind", "Only this kind, e.g. license.revoke. Empty: all.", max_length=64
            ),
            text(
                "subject",
                "Subject",
                "Only this subject, e.g. license:<id>. Empty: all.",
                max_length=128,
            ),
            number(
                "limit", "At most", "How many entries to show.", minimum=1, maximum=500, default=50
            ),
        ),
    ),
)
