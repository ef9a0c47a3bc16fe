"""What can go wrong in a licensing request, named once.

Each error carries a short machine code (the `error` field of the API's JSON envelope) and a
message written for the person who sent the request: what was wrong and what to send
instead. The API maps each class to an HTTP status; the service knows nothing of HTTP.
"""

from __future__ import annotations


class LicensingError(Exception):
    code = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(LicensingError):
    """The request is malformed or names something that cannot be used this way."""

    code = "bad_request"


class NotFound(LicensingError):
    """The request names something that does not exist."""

    code = "not_found"


class Conflict(LicensingError):
    """The request is well-formed but the current state forbids it (a duplicate slug, a code
    already used up, a license already revoked)."""

    code = "conflict"


class Unauthorized(LicensingError):
    """An admin route without the right bearer key."""

    code = "unauthorized"


class PaymentNotConfigured(LicensingError):
    """Purchases need a payment provider, and none is configured (payments are out of scope)."""

    code = "payment_not_configured"


class Forbidden(LicensingError):
    """An admin route with a bearer key that is not the admin key (Keysat: 403)."""

    code = "forbidden"
