"""What other systems use, in Keysat's shapes: scoped API keys and webhooks, their requests and
answers declared once (the API decodes and encodes them, the OpenAPI document is generated
from them, the console reads them).
"""

from __future__ import annotations

import urllib.parse
from typing import Annotated, Literal

import msgspec

from daemon.licensing.answers import Answer
from daemon.licensing.models import NO_NUL, LongText, Offset, PageSize, Request, Uuid, clamped

# ----- requests -----

Role = Literal["read-only", "license-issuer", "support", "merchant-onboard", "full-admin"]
EventType = Literal[
    "license.issued",
    "license.revoked",
    "license.suspended",
    "license.unsuspended",
    "machine.activated",
    "machine.deactivated",
    "migration.self_healed",
    "product.created",
    "code.redeemed",
]
# Keysat's wildcard: an endpoint subscribed to `*` hears every event (its default).
EVERY_EVENT = "*"
Subscription = EventType | Literal["*"]
# Checked against the known scopes by `access`, which names them (and Keysat's spelling).
ScopeText = Annotated[str, msgspec.Meta(pattern=r"^[a-z_-]{1,40}:(read|write)$")]
# Keysat's label: at most 80 characters, not blank (stored without surrounding spaces).
Label = Annotated[str, msgspec.Meta(min_length=1, max_length=80, pattern=r"^\s*[^\s\x00][^\x00]*$")]
Url = Annotated[str, msgspec.Meta(max_length=2048, pattern=r"^https?://[^\s\x00]+$")]
Secret = Annotated[str, msgspec.Meta(min_length=16, max_length=256, pattern=NO_NUL)]
# Keysat's delivery-log filter; `all` (or none) lists every delivery.
DeliveryFilter = Literal["pending", "delivered", "failed", "all"]


class ApiKeyCreate(Request, kw_only=True):
    label: Label
    role: Role
    # Keysmith's addition to Keysat's `{label, role}`: scopes added to the role's.
    scopes: Annotated[list[ScopeText], msgspec.Meta(max_length=64)] | None = None

    def __post_init__(self) -> None:
        self.label = self.label.strip()


class WebhookEndpointCreate(Request, kw_only=True):
    url: Url
    event_types: Annotated[list[Subscription], msgspec.Meta(min_length=1, max_length=16)] = (
        msgspec.field(default_factory=lambda: [EVERY_EVENT])
    )
    description: LongText = ""
    # None: a 32-byte secret is generated (shown once, in the create answer).
    secret: Secret | None = None

    def __post_init__(self) -> None:
        try:
            host = urllib.parse.urlsplit(self.url).hostname
        except ValueError:
            host = None
        if not host:
            raise ValueError("'url' must be an http:// or https:// URL with a host")


class DeliveryQuery(Request, kw_only=True):
    endpoint_id: Uuid | None = None
    status: DeliveryFilter = "all"
    # Keysat's default and greatest page.
    limit: PageSize = 100
    offset: Offset = 0

    def __post_init__(self) -> None:
        self.limit = clamped(self.limit, 500)


# ----- answers -----


class ApiKey(Answer, kw_only=True):
    """An API key as listed: Keysat's fields and Keysmith's extra scopes; never the token, only
    its first characters."""

    id: str
    label: str
    role: str
    scopes: list[str]
    token_prefix: str
    created_at: str | None
    # Keysmith writes it at most once a minute (access.LAST_USED_EVERY).
    last_used_at: str | None
    revoked_at: str | None


class ApiKeyCreated(ApiKey, kw_only=True):
    """The one answer that carries the token: store it now, it cannot be shown again."""

    token: str


class ApiKeyRevoked(Answer, kw_only=True):
    """Keysat's answer to a revoke: the key is refused from the next request on."""

    ok: Literal[True]
    revoked_at: str


class ApiKeyAlreadyRevoked(Answer, kw_only=True):
    """Keysat's answer to revoking a key already revoked: nothing changed."""

    ok: Literal[True]
    already_revoked: Literal[True]


class WebhookEndpoint(Answer, kw_only=True):
    """A webhook endpoint as listed: Keysat's fields, never the secret (as in Keysat), only
    its first characters (Keysmith's `secret_prefix`) to recognise it."""

    id: str
    url: str
    event_types: list[str]
    active: bool
    description: str
    created_at: str | None
    updated_at: str | None
    secret_prefix: str


class WebhookEndpointCreated(WebhookEndpoint, kw_only=True):
    """The one answer that carries the secret: store it now, it cannot be shown again."""

    secret: str


class WebhookEndpointSet(Answer, kw_only=True):
    """Keysat's `{ok: true}`, with the endpoint as it is now."""

    ok: bool = True
    endpoint: WebhookEndpoint


class DeliveryAttempt(Answer, kw_only=True):
    attempt: int
    status: Literal["delivered", "retry", "failed"]
    response_code: int | None
    latency_ms: int
    error: str | None
    at: str | None


class Delivery(Answer, kw_only=True):
    """One event for one endpoint, Keysat's delivery row: `id` is the `X-Keysat-Delivery`
    header of every attempt, `payload_json` the body sent, `attempt_count`,
    `last_status_code` and `last_error` count from the last retry. Keysmith adds the
    delivery's `status`, its event's id and the `log` of every attempt kept."""

    id: str
    endpoint_id: str
    event_type: str
    payload_json: str
    attempt_count: int
    next_attempt_at: str | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: str | None
    created_at: str | None
    event_id: int
    status: Literal["pending", "delivered", "failed"]
    log: list[DeliveryAttempt]
