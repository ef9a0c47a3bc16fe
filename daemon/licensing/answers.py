"""Every answer of the licensing layer, declared once (msgspec Structs, Keysat's field names).

The API encodes these as they are; the OpenAPI document's response schemas are generated
from them; the console and the actions read them as plain dicts (`msgspec.to_builtins`).
Times are RFC 3339 UTC strings (`state.iso_time`).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

# The reasons the published client knows; validate answers only these (or ok).
Reason = Literal[
    "bad_format",
    "bad_signature",
    "not_found",
    "revoked",
    "suspended",
    "expired",
    "product_mismatch",
    "fingerprint_mismatch",
    "too_many_machines",
]


PreviewRefusal = Literal[
    "unknown_code", "disabled", "expired", "wrong_product", "wrong_tier", "exhausted"
]


class Answer(msgspec.Struct, kw_only=True):
    pass


class Refusal(Answer, kw_only=True, omit_defaults=True):
    """validate's `{ok: false, reason}`, with what is known about the license when it is.
    Fields not known are left out (`ok` and `reason` are always there)."""

    ok: Literal[False]
    reason: Reason
    license_id: str | None = None
    product_id: str | None = None
    expires_at: str | None = None
    grace_until: str | None = None
    max_machines: int | None = None
    # too_many_machines on an unlimited license: the server's ceiling (KEYSMITH_UNLIMITED_SEATS).
    seat_ceiling: int | None = None


class Valid(Answer, kw_only=True):
    ok: bool = True
    license_id: str
    product_id: str
    product_slug: str
    issued_at: str
    expires_at: str | None
    grace_until: str | None
    in_grace_period: bool
    is_trial: bool
    entitlements: list[str]
    status: str
    machine_id: str | None
    # 0 = unlimited
    max_machines: int


class RateLimited(Answer, kw_only=True):
    """validate's and heartbeat's answer to a client over its rate limit: 200, as Keysat
    answers it, so the published clients read a reason instead of raising on a 429."""

    ok: Literal[False] = False
    reason: Literal["rate_limited"] = "rate_limited"
    message: str


class SeatAnswer(Answer, kw_only=True):
    ok: bool
    reason: str | None
    machine_id: str | None
    active_count: int
    max_machines: int


class SeatCeiling(SeatAnswer, kw_only=True):
    """An unlimited license (max_machines 0) at the server's ceiling of active machines."""

    seat_ceiling: int
    message: str


class CatalogEntryOut(Answer, kw_only=True):
    slug: str
    name: str
    description: str = ""


class Product(Answer, kw_only=True):
    id: str
    slug: str
    name: str
    description: str
    price_sats: int
    # SAT, or a currency shown beside the sats price (Keysmith charges price_sats).
    price_currency: str
    # The price in price_currency's smallest unit (Keysat's name).
    price_value: int
    metadata: dict[str, Any]
    entitlements_catalog: list[Any]
    active: bool
    created_at: str | None
    updated_at: str | None


class PublicPolicy(Answer, kw_only=True):
    """The buyer-visible fields the published client's `PublicPolicy` reads."""

    slug: str
    name: str
    description: str
    price_sats: int
    duration_seconds: int
    grace_seconds: int
    max_machines: int
    is_trial: bool
    entitlements: list[str]
    highlighted: bool
    # Keysat's buy-page copy, read from the policy's metadata (`marketing_bullets`,
    # `marketing_bullets_position` above or below, `hidden_entitlements`); [] when absent.
    marketing_bullets: list[Any]
    marketing_bullets_position: Literal["above", "below"]
    hidden_entitlements: list[Any]
    # Keysat's launch special; Keysmith refuses featured codes, so never one.
    featured_discount: None = None
    is_recurring: bool = False
    renewal_period_days: int = 0
    trial_days: int


class Policy(PublicPolicy, kw_only=True):
    id: str
    product_id: str
    # The policy's own price; null: it follows the product's (price_sats is then the product's).
    price_sats_override: int | None
    duration_days: int | None
    # Listed to buyers (Keysat's name).
    public: bool
    active: bool
    archived: bool
    # When it was archived (Keysat's archived_at; Keysmith's archived is inactive), else None.
    archived_at: str | None
    sort_order: int
    is_default: bool
    price_currency: str
    price_value: int
    metadata: dict[str, Any]
    created_at: str | None
    updated_at: str | None


class PublicProduct(Answer, kw_only=True):
    slug: str
    name: str
    description: str
    base_price_sats: int
    entitlements_catalog: list[Any]


class PublicPolicies(Answer, kw_only=True):
    product: PublicProduct
    policies: list[PublicPolicy]


class License(Answer, kw_only=True):
    id: str
    product_id: str
    product_slug: str
    policy_id: str | None
    policy_slug: str | None
    # Keysat's admin list names the tier too.
    policy_name: str | None
    # The invoice that sold it (a purchase or a redeemed code); None when an admin issued it.
    invoice_id: str | None
    license_key: str
    status: str
    issued_at: str | None
    expires_at: str | None
    grace_seconds: int
    fingerprint_bound: bool
    fingerprint_hash: str | None
    # Keysat's: the machine fingerprint the license was issued bound to, as sent.
    fingerprint: str | None
    # Keysat's user identity locked to a license; Keysat writes none, nor does Keysmith.
    bound_identity: str | None
    # Keysat's: how it was issued ({source: admin_issue, note} or {source: purchase, ...}).
    metadata: dict[str, Any]
    nostr_npub: str | None
    note: str
    buyer_email: str | None
    revoked_at: str | None
    revocation_reason: str | None
    suspended_at: str | None
    suspension_reason: str | None
    is_trial: bool
    entitlements: list[str]
    max_machines: int


class Issued(Answer, kw_only=True):
    license_id: str
    product_id: str
    license_key: str
    issued_at: str | None
    expires_at: str | None
    entitlements: list[str]
    is_trial: bool
    # 0 = unlimited
    max_machines: int


class StatusChange(Answer, kw_only=True):
    """revoke / suspend / unsuspend: Keysat's `{ok: true, ...}` with the license as it is now."""

    ok: bool = True
    license: License


class LicenseSummary(Answer, kw_only=True):
    total: int
    active: int
    suspended: int
    revoked: int
    last_24h: int
    last_7d: int


class RevenueSummary(Answer, kw_only=True):
    """Sats taken by settled invoices (Keysat's shape); free ones count 0."""

    total_sats: int
    last_24h_sats: int
    last_7d_sats: int
    last_30d_sats: int
    settled_paid_invoice_count: int


class LicenseCounts(Answer, kw_only=True):
    """Licenses per product id and per policy id."""

    by_product: dict[str, int]
    by_policy: dict[str, int]


class Code(Answer, kw_only=True):
    id: str
    code: str
    kind: str
    # percent: basis points, as Keysat
    amount: int
    # Always SAT: the only currency a code's amount is taken in (see models.CodeCreate).
    discount_currency: str = "SAT"
    applies_to_product_id: str | None
    product_slug: str | None
    # The one policy the code is limited to, or None (several are in applies_to_policy_ids).
    applies_to_policy_id: str | None
    policy_slug: str | None
    applies_to_policy_ids: list[str]
    max_uses: int | None
    used_count: int
    expires_at: str | None
    active: bool
    description: str
    referrer_label: str | None
    # Keysat's launch special, which Keysmith refuses (models.CodeTerms): never true.
    featured: bool = False
    created_at: str | None
    updated_at: str | None


class WeakCode(Code, kw_only=True):
    """A free or high-value code a guesser could find soon (KEYSMITH_WEAK_CODE_DAYS): Keysat's
    fields, and `weak` saying why, with a strong code to use instead. Others have no `weak`."""

    weak: str


class CodePreviewAnswer(Answer, kw_only=True, omit_defaults=True):
    """Keysat's preview: `valid` with the price, or not with a reason; nothing is used up."""

    valid: bool
    message: str
    base_price_sats: int
    reason: PreviewRefusal | None = None
    code: str | None = None
    kind: str | None = None
    is_free: bool | None = None
    discount_applied_sats: int | None = None
    final_price_sats: int | None = None
    amount_pct: float | None = None


class Redemption(Answer, kw_only=True):
    """Keysat's redemption. Keysmith writes one only once its license is issued (it has no
    payment provider, so no redemption waits on an invoice): always `redeemed`."""

    id: str
    code_id: str
    invoice_id: str | None
    license_id: str | None
    status: Literal["redeemed"] = "redeemed"
    # From its invoice; None where 0009 unlinked a missing one.
    discount_applied_sats: int | None
    base_price_sats: int | None
    final_price_sats: int | None
    buyer_email: str | None
    created_at: str | None
    updated_at: str | None


class CodeWithRedemptions(Answer, kw_only=True):
    code: Code
    redemptions: list[Redemption]


class Machine(Answer, kw_only=True):
    id: str
    license_id: str
    fingerprint_hash: str
    hostname: str | None
    platform: str | None
    first_seen_at: str | None
    last_seen_at: str | None
    active: bool
    deactivated_at: str | None
    deactivate_reason: str | None
    # Keysat's names for the three above, and the license's product, buyer and status.
    activated_at: str | None
    last_heartbeat_at: str | None
    deactivation_reason: str | None
    product_id: str
    product_slug: str
    product_name: str
    buyer_email: str | None
    license_status: str
    # Keysat's last client address; Keysmith does not record client addresses.
    ip_last_seen: None = None


class MachineDeactivated(Answer, kw_only=True):
    ok: bool = True
    machine: Machine


class AuditEntry(Answer, kw_only=True):
    """One audit row, in Keysmith's names and, with the same meaning, in Keysat's."""

    id: int
    created_at: str | None
    # Who acted: a kind (`console`, `master_key`, `action`, `public`, `system`; `admin` before
    # credentials were recorded) or one API key, `api_key:<id>`.
    actor: str
    action: str
    # What it happened to, `kind:id` (`license:<uuid>`).
    subject: str | None
    detail: dict[str, Any]
    # Keysat's: the actor's kind, and the lower-case hex SHA-256 of the credential that acted
    # (the master key or the API key's token; null for a kind with no credential to name).
    actor_kind: str
    actor_hash: str | None
    # Keysat's: the subject's kind (in Keysat's words) and id.
    target_kind: str | None
    target_id: str | None
    details: dict[str, Any]
    occurred_at: str | None


class Redeemed(Answer, kw_only=True):
    license_id: str
    license_key: str
    invoice_id: str
    redemption_id: str


class Purchase(Answer, kw_only=True):
    """POST /v1/purchase for a purchase that costs nothing: settled and issued at once."""

    invoice_id: str
    # As Keysat fills them for a free purchase: `free-<invoice_id>`, and "" (no checkout).
    btcpay_invoice_id: str
    checkout_url: str = ""
    amount_sats: int
    base_price_sats: int
    discount_applied_sats: int
    poll_url: str
    status: str
    license_id: str | None
    license_key: str | None


class PurchaseStatus(Answer, kw_only=True):
    invoice_id: str
    status: str
    product_id: str
    amount_sats: int
    license_id: str | None
    license_key: str | None


class Recovered(Answer, kw_only=True):
    ok: bool = True
    invoice_id: str
    license_id: str
    license_key: str
    product_id: str
    product_slug: str
    issued_at: str | None
    expires_at: str | None
    entitlements: list[str]


class PublicSet(Answer, kw_only=True):
    ok: bool = True
    public: bool


class ActiveSet(Answer, kw_only=True):
    """Keysat's `{ok: true}` for a product, policy or code toggled, with the state set."""

    ok: bool = True
    active: bool


class ArchivedSet(Answer, kw_only=True):
    ok: bool = True
    archived: bool


class Deleted(Answer, kw_only=True):
    """Keysat's `{ok: true, deleted: <slug or code>}`."""

    ok: bool = True
    deleted: str


class PolicyDeleted(Deleted, kw_only=True):
    """Keysat's policy delete, with what went with it: never a license, invoice, machine or
    redemption here (a policy with any is not deleted, and `force` is refused)."""

    force: bool = False
    cascaded_licenses: int = 0
    cascaded_invoices: int = 0
    cascaded_machines: int = 0
    cascaded_redemptions: int = 0


class ProductDeleted(PolicyDeleted, kw_only=True):
    """Keysat's product delete: its policies go with it (codes never: a product with codes
    is not deleted)."""

    cascaded_policies: int
    cascaded_codes: int = 0


def plain(value: object) -> Any:
    """An answer as dicts and lists, for the console's templates and the actions' messages."""
    return msgspec.to_builtins(value)


# ----- the shop itself -----


class OperatorName(Answer, kw_only=True):
    stored: str | None
    effective: str | None
    fallback_env: str | None


class OperatorNameSet(Answer, kw_only=True):
    ok: bool = True
    operator_name: str | None


class DbCounts(Answer, kw_only=True):
    products: int
    policies: int
    licenses_total: int
    licenses_active: int
    invoices_total: int
    invoices_settled: int
    machines_active: int
    discount_codes: int
    audit_log: int


class DbInfo(Answer, kw_only=True):
    db_path: str
    db_size_bytes: int
    last_write_at: str | None
    counts: DbCounts


class IssuerKeyImported(Answer, kw_only=True):
    ok: bool = True
    public_key_pem: str
    # Keysat needs a restart to sign with the imported key; Keysmith uses it at once.
    restart_required: bool = False
    message: str = (
        "Issuer key imported; new licenses are signed with it from now on. The previous key is "
        "kept, retired"
    )


class TierChanged(Answer, kw_only=True):
    """Keysat's comp change-tier answer."""

    ok: bool = True
    applied: bool = True
    license_id: str
    tier_change_id: str
    skip_payment: bool = True
    from_policy_slug: str | None
    to_policy_slug: str
