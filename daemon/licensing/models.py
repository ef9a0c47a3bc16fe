"""Every request the licensing layer accepts, declared once, with its bounds (msgspec).

The HTTP API decodes bodies and query strings into these (`daemon.licensing.wire`), the
console and the StartOS actions convert their forms with `wire.parse`, so all three refuse the
same input with the same message. A field not declared here is refused by name
(`forbid_unknown_fields`): silently dropping what a client sent is data loss. The OpenAPI
document is generated from these types (`daemon.api.openapi`), so a new field is one line
here (plus its SQL).

Why msgspec and not pydantic v2: measured on the validate path, one request decoded (with
every bound checked) and one answer encoded, min of 5 x 100,000 (`bench/bench_models.py` on
the shared 2-core bench machine, so read the ratios): msgspec 1.3 us, pydantic v2 4.1 us, and
stdlib json with no checks at all 5.5 us. msgspec validates while it decodes, in C, encodes
Structs directly, emits the JSON Schema the OpenAPI document is built from, and has no
dependencies of its own. End to end (wrk at 64 connections, `bench/bench_validate.py --quick`,
one run after the other on the same shared machine, so the figure to compare is validate's
throughput as a share of /healthz's in the same run): 0.41 before this change, 0.44 with
msgspec, 0.38 with pydantic v2 doing this route's decoding and encoding.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

import msgspec

from daemon.licensing import inputs
from daemon.licensing.errors import BadRequest

T = TypeVar("T")

NO_NUL = r"^[^\x00]*$"
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NO_NUL)]
LongText = Annotated[str, msgspec.Meta(max_length=inputs.MAX_TEXT, pattern=NO_NUL)]
Slug = Annotated[str, msgspec.Meta(pattern=inputs.SLUG.pattern, description=inputs.SLUG_RULE)]
CODE_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9_-]{0,62}[A-Za-z0-9])?$"
EMAIL_PATTERN = r"^[^\x00\s@]+@[^\s@]+$"
UUID_PATTERN = r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
CURRENCY_PATTERN = r"^[A-Z]{3}$"
CodeText = Annotated[str, msgspec.Meta(pattern=CODE_PATTERN)]
Email = Annotated[str, msgspec.Meta(min_length=3, max_length=254, pattern=EMAIL_PATTERN)]
Fingerprint = Annotated[str, msgspec.Meta(min_length=1, max_length=512, pattern=NO_NUL)]
HostText = Annotated[str, msgspec.Meta(max_length=255, pattern=NO_NUL)]
Key = Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
# Keysat takes any text; bounded here (a bech32 npub is 63 characters).
Npub = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NO_NUL)]
Uuid = Annotated[str, msgspec.Meta(pattern=UUID_PATTERN)]
Sats = Annotated[int, msgspec.Meta(ge=0, le=inputs.MAX_SATS)]
Seconds = Annotated[int, msgspec.Meta(ge=0, le=100 * 366 * 86_400)]
Seats = Annotated[int, msgspec.Meta(ge=0, le=10_000, description="0 = unlimited")]
SortOrder = Annotated[int, msgspec.Meta(ge=-10_000, le=10_000)]
Currency = Annotated[str, msgspec.Meta(pattern=CURRENCY_PATTERN)]
# Keysat's name for a price in sats, and Keysmith's older one (stored since 0010).
SATS_CURRENCIES = ("SAT", "BTC")
# Unix seconds, or an ISO 8601 time with its timezone (`inputs.timestamp` reads both).
When = Annotated[int, msgspec.Meta(ge=1, le=inputs.MAX_UNIX)] | str
SlugList = Annotated[list[Slug], msgspec.Meta(max_length=255)]
# A list's page size: Keysat clamps it into 1..the route's greatest page instead of refusing.
PageSize = Annotated[
    int, msgspec.Meta(ge=-(2**62), le=2**62, description="clamped to 1..the route's maximum")
]
# Rows of the list skipped before the page (Keysmith's, for paging both ways).
Offset = Annotated[int, msgspec.Meta(ge=0, le=10**9)]
DiscountKind = Literal["percent", "fixed_sats", "free_license", "set_price"]
LicenseStatus = Literal["active", "revoked", "suspended"]


class Request(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, kw_only=True):
    """A request: unknown fields refused, absent optional fields None."""


class CatalogEntry(Request, kw_only=True):
    slug: Slug
    name: Text
    description: LongText = ""


# ----- public -----


class ValidateRequest(Request, kw_only=True):
    # Any string is a key to judge: an over-long or malformed one is answered bad_format (200).
    key: Annotated[str, msgspec.Meta(max_length=64 * 1024)]
    product_slug: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    fingerprint: Fingerprint | None = None
    hostname: HostText | None = None
    platform: HostText | None = None


class ActivateRequest(Request, kw_only=True):
    key: Key
    fingerprint: Fingerprint
    hostname: HostText | None = None
    platform: HostText | None = None


class HeartbeatRequest(Request, kw_only=True):
    key: Key
    fingerprint: Fingerprint


class DeactivateRequest(Request, kw_only=True):
    key: Key
    fingerprint: Fingerprint
    reason: Text | None = None


class RedeemRequest(Request, kw_only=True):
    product: Slug
    code: CodeText
    # Keysat: the tier the license is issued under (404 when the product has no such tier).
    policy_slug: Slug | None = None
    buyer_email: Email | None = None
    buyer_note: LongText | None = None


class PurchaseRequest(Request, kw_only=True):
    product: Slug
    policy_slug: Slug | None = None
    code: CodeText | None = None
    buyer_email: Email | None = None
    buyer_note: LongText | None = None
    redirect_url: Annotated[str, msgspec.Meta(max_length=2048)] | None = None


class RecoverRequest(Request, kw_only=True):
    invoice_id: Uuid
    # Keysat's name; `buyer_email` is Keysmith's older one, still taken.
    email: Email | None = None
    buyer_email: Email | None = None

    def __post_init__(self) -> None:
        if (self.email is None) == (self.buyer_email is None):
            raise ValueError("'email' is required: the email the purchase was made with")
        self.email = self.email or self.buyer_email


# ----- admin: catalogue -----


class ProductCreate(Request, kw_only=True):
    slug: Slug
    name: Text
    # Keysat: `price_sats` alone, or `price_currency` SAT with `price_value` (see below).
    price_sats: Sats | None = None
    description: LongText = ""
    metadata: dict[str, Any] | None = None
    entitlements_catalog: Annotated[list[CatalogEntry], msgspec.Meta(max_length=64)] | None = None
    price_currency: Currency | None = None
    # The price in the currency's smallest unit (sats for SAT, cents for USD or EUR).
    price_value: Sats | None = None

    def __post_init__(self) -> None:
        _check_json("metadata", self.metadata)
        _check_catalog(self.entitlements_catalog)
        self.price_sats = _sats_price(self.price_sats, self.price_currency, self.price_value)


class ProductUpdate(Request, kw_only=True):
    name: Text | None = None
    description: LongText | None = None
    price_sats: Sats | None = None
    # Keysat: null clears the catalog (and the metadata) as [] ({}) does, absent: unchanged.
    metadata: dict[str, Any] | msgspec.UnsetType | None = msgspec.UNSET
    entitlements_catalog: (
        Annotated[list[CatalogEntry], msgspec.Meta(max_length=64)] | msgspec.UnsetType | None
    ) = msgspec.UNSET
    active: bool | None = None
    price_currency: Currency | None = None
    price_value: Sats | None = None

    def __post_init__(self) -> None:
        _check_json("metadata", self.metadata)
        _check_catalog(self.entitlements_catalog)
        if (self.price_currency is None) != (self.price_value is None):
            raise ValueError("'price_currency' and 'price_value' go together: send both or neither")
        if self.price_currency in SATS_CURRENCIES and self.price_sats is None:
            self.price_sats = self.price_value


class ActiveToggle(Request, kw_only=True):
    active: bool


class PublicToggle(Request, kw_only=True):
    public: bool


class ArchiveToggle(Request, kw_only=True):
    archived: bool


class PolicyTerms(Request, kw_only=True):
    """The fields a policy's create and edit share (Keysat's names and meanings)."""

    description: LongText | None = None
    # The policy's own price; without it the policy follows the product's price.
    price_sats_override: Sats | None = None
    # Seconds a license lasts from issue; 0 or absent: perpetual.
    duration_seconds: Seconds | None = None
    # Seconds after expiry that validate still answers ok (in_grace_period).
    grace_seconds: Seconds | None = None
    max_machines: Seats | None = None
    is_trial: bool | None = None
    entitlements: SlugList | None = None
    highlighted: bool | None = None
    sort_order: SortOrder | None = None
    is_default: bool | None = None
    # Listed to buyers (Keysat's `public`); absent on create: listed.
    public: bool | None = None
    price_currency: Currency | None = None
    price_value: Sats | None = None
    # Keysat's free-form JSON object; an edit replaces it whole.
    metadata: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        _check_json("metadata", self.metadata)
        if self.entitlements is not None and len(set(self.entitlements)) != len(self.entitlements):
            raise ValueError("'entitlements' lists the same slug twice")


class PolicyCreate(PolicyTerms, kw_only=True):
    slug: Slug
    name: Text
    product_id: Uuid | None = None
    product_slug: Slug | None = None


class PolicyUpdate(PolicyTerms, kw_only=True):
    name: Text | None = None
    # Keysat: a number sets the policy's price, null follows the product's, absent: unchanged.
    price_sats_override: Sats | msgspec.UnsetType | None = msgspec.UNSET  # type: ignore[assignment]
    active: bool | None = None


class OperatorNameSet(Request, kw_only=True):
    """Keysat's operator-name edit: an empty name clears it."""

    name: Annotated[str, msgspec.Meta(max_length=200, pattern=NO_NUL)]


# ----- admin: licenses -----


class LicenseIssue(Request, kw_only=True):
    product_slug: Slug
    policy_slug: Slug | None = None
    note: LongText | None = None
    fingerprint: Fingerprint | None = None
    expires_at: When | None = None
    # Overrides of the policy's terms for this one license.
    entitlements: SlugList | None = None
    max_machines: Seats | None = None
    is_trial: bool | None = None
    grace_seconds: Seconds | None = None
    buyer_email: Email | None = None
    # Keysat's buyer Nostr public key, stored as given and searchable (`?nostr_npub=`).
    nostr_npub: Npub | None = None

    def __post_init__(self) -> None:
        self.expires_at = _when("expires_at", self.expires_at)


class TierChange(Request, kw_only=True):
    """Keysat's admin change-tier: the target policy of the license's product."""

    to_policy_slug: Slug
    skip_payment: bool = False
    reason: LongText | None = None


class ReasonRequest(Request, kw_only=True):
    """Revoke, suspend and machine deactivation: an optional reason, stored and audited."""

    reason: LongText | None = None


class LicenseQuery(Request, kw_only=True):
    product_id: Uuid | None = None
    status: LicenseStatus | None = None
    q: Text | None = None
    buyer_email: Annotated[str, msgspec.Meta(min_length=1, max_length=254)] | None = None
    invoice_id: Uuid | None = None
    nostr_npub: Npub | None = None
    # With no filter at all, Keysat's search answers the 100 most recent licenses.
    limit: PageSize = 100
    offset: Offset = 0

    def __post_init__(self) -> None:
        self.limit = clamped(self.limit, 1000)


# ----- admin: discount codes -----


class CodeTerms(Request, kw_only=True):
    """The fields a code's create and edit share (Keysat's names and meanings)."""

    max_uses: Annotated[int, msgspec.Meta(ge=1, le=10**9)] | None = None
    expires_at: When | None = None
    description: LongText | None = None
    # A free-form tag for tracking where the code was handed out.
    referrer_label: Annotated[str, msgspec.Meta(max_length=200, pattern=NO_NUL)] | None = None
    # Limits the code to these policies of its product; [] lifts the limit.
    policy_slugs: SlugList | None = None
    # Keysat's "launch special" shown on its buy page and applied with no code typed.
    featured: bool = False

    def __post_init__(self) -> None:
        if self.expires_at is not msgspec.UNSET:
            self.expires_at = _when("expires_at", self.expires_at)
        if self.featured:
            raise ValueError(
                "'featured' cannot be true: Keysmith has no buy page to show a launch special "
                "on and applies a code only when the buyer gives it"
            )


class CodeCreate(CodeTerms, kw_only=True):
    code: CodeText
    kind: DiscountKind
    # percent: basis points (1250 = 12.5%), as Keysat; fixed_sats / set_price: sats.
    amount: Sats = 0
    product_slug: Slug | None = None
    policy_slug: Slug | None = None
    # Keysat's currency of a fixed_sats or set_price amount; only sats here (see below).
    discount_currency: Annotated[str, msgspec.Meta(max_length=8)] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self.code = self.code.upper()  # Keysat stores codes upper-cased; buyers type any case
        if (self.discount_currency or "SAT").upper() != "SAT":
            raise ValueError(
                f"'discount_currency' {self.discount_currency!r} is not accepted: Keysmith "
                "takes code amounts in sats only (SAT), since a USD or EUR amount needs the "
                "exchange rate a payment provider supplies"
            )


class CodeUpdate(CodeTerms, kw_only=True):
    """Keysat's edit: an absent field stays as it is; null clears a limit or the label."""

    amount: Sats | None = None
    active: bool | None = None
    max_uses: Annotated[int, msgspec.Meta(ge=1, le=10**9)] | msgspec.UnsetType | None = (
        msgspec.UNSET
    )
    expires_at: When | msgspec.UnsetType | None = msgspec.UNSET
    referrer_label: (
        Annotated[str, msgspec.Meta(max_length=200, pattern=NO_NUL)] | msgspec.UnsetType | None
    ) = msgspec.UNSET


class CodePreview(Request, kw_only=True):
    code: CodeText
    product: Slug
    policy_slug: Slug | None = None


# ----- admin: machines and audit -----


class MachineQuery(Request, kw_only=True):
    license_id: Uuid | None = None
    # Keysat's product filters; product_id wins when both are given.
    product_id: Uuid | None = None
    product_slug: Slug | None = None
    include_inactive: bool = False
    # Keysmith's: only the deactivated machines (the console's filter), and paging.
    only_inactive: bool = False
    limit: PageSize = 500
    offset: Offset = 0

    def __post_init__(self) -> None:
        self.limit = clamped(self.limit, 5000)


class AuditQuery(Request, kw_only=True):
    action: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    # Who acted: a kind (`console`, `master_key`, `api_key`, `action`, ...) or one API key
    # (`api_key:<id>`).
    actor: Annotated[str, msgspec.Meta(min_length=1, max_length=80)] | None = None
    subject: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None
    limit: PageSize = 100
    before_id: Annotated[int, msgspec.Meta(ge=1, le=2**62)] | None = None
    offset: Offset = 0

    def __post_init__(self) -> None:
        self.limit = clamped(self.limit, 1000)


class PolicyQuery(Request, kw_only=True):
    """Keysat lists only the policies still sold unless asked; archived is inactive here."""

    product_id: Uuid | None = None
    product_slug: Slug | None = None
    include_inactive: bool = False
    include_archived: bool = False


class DeleteQuery(Request, kw_only=True):
    """Keysat's product and policy delete query; its `force` cascade is refused."""

    force: bool = False

    def __post_init__(self) -> None:
        if self.force:
            raise ValueError(
                "'force' cannot be true: Keysmith never deletes licenses, invoices or machines "
                "with their product or policy. Revoke the licenses, archive the policy or "
                "deactivate the product instead"
            )


class CodeQuery(Request, kw_only=True):
    product_slug: Slug | None = None
    # Keysat lists only the active codes unless asked.
    include_inactive: bool = False


def clamped(limit: int, most: int) -> int:
    return min(max(limit, 1), most)


def _sats_price(sats: int | None, currency: str | None, value: int | None) -> int:
    """The product's price in sats from Keysat's two forms, refusing what they cannot mean."""
    if (currency is None) != (value is None):
        raise ValueError("'price_currency' and 'price_value' go together: send both or neither")
    if currency is None or value is None:
        if sats is None:
            raise ValueError(
                "'price_sats' is missing: send price_sats, or price_currency SAT with price_value"
            )
        return sats
    if currency in SATS_CURRENCIES:
        if sats is not None and sats != value:
            raise ValueError(
                f"'price_sats' {sats} and 'price_value' {value} in {currency} disagree: send "
                "price_currency with price_value, or price_sats alone"
            )
        return value
    if sats is None:
        raise ValueError(
            f"'price_sats' is needed with a {currency} price: Keysmith charges the sats price "
            f"and shows the {currency} one, since converting at purchase time needs the "
            "exchange rates of a payment provider"
        )
    return sats


def _check_json(name: str, value: object) -> None:
    if value is not None and value is not msgspec.UNSET:
        problem = inputs.json_bounds_problem(value)
        if problem is not None:
            raise ValueError(f"'{name}' {problem}")


def _check_catalog(entries: list[CatalogEntry] | msgspec.UnsetType | None) -> None:
    if isinstance(entries, list) and len({e.slug for e in entries}) != len(entries):
        raise ValueError("'entitlements_catalog' defines the same entitlement slug twice")


def _when(name: str, value: int | str | None) -> int | None:
    try:
        return inputs.timestamp({name: value}, name)
    except BadRequest as e:
        raise ValueError(e.message) from None
