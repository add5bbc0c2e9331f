"""Errors raised by khaime-django.

Calls to Khaime raise a subclass of :class:`KhaimeError`, one per way a call can fail, so callers
catch exactly what they can handle. Configuration problems are ``ImproperlyConfigured`` and bad
webhooks are ``SuspiciousOperation``, so Django answers them correctly with no try/except.
None of these ever carries the API key.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured, SuspiciousOperation


class KhaimeError(Exception):
    """A call to Khaime failed. ``status_code`` is Khaime's HTTP status, when there was one."""

    #: Whether the buyer may simply try again later (shown on the error page).
    transient = False

    def __init__(self, message: str, *, status_code: int | None = None, details=None):
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.details = details if details is not None else {}

    def __str__(self) -> str:
        prefix = f"[{self.status_code}] " if self.status_code else ""
        suffix = f" {self.details}" if self.details else ""
        return f"{prefix}{self.message}{suffix}"


class KhaimeAuthenticationError(KhaimeError):
    """401: the API key is missing, wrong or revoked."""


class KhaimeValidationError(KhaimeError):
    """400/422 from Khaime, or a request we refused to send; ``details`` names the fields."""


class KhaimeRequestInvalidError(KhaimeValidationError):
    """The request was refused before sending: it would not have passed Khaime's validation."""


class KhaimeNotFoundError(KhaimeError):
    """404: Khaime does not know the session."""


class KhaimeRateLimitError(KhaimeError):
    """429: over Khaime's 1,000 requests an hour (or 50 a second) for this key."""

    transient = True
    #: Seconds Khaime's ``Retry-After`` header asked us to wait, when it sent one.
    retry_after: float | None = None


class KhaimeServerError(KhaimeError):
    """5xx: Khaime failed."""

    transient = True


class KhaimeConnectionError(KhaimeError):
    """Khaime could not be reached (DNS, refused, reset)."""

    transient = True
    # True when the request provably never reached Khaime, so even a POST may be retried.
    never_sent = False


class KhaimeTimeoutError(KhaimeConnectionError):
    """Khaime did not answer within the configured timeout."""


class KhaimeCheckoutInProgressError(KhaimeError):
    """Another request is still creating the Khaime session for this purchase; try again shortly.
    ``retry_after`` is the seconds to suggest (the view sends it as ``Retry-After``)."""

    transient = True

    def __init__(self, message: str, *, retry_after: int = 5, **kwargs):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class KhaimeResponseError(KhaimeError):
    """Khaime answered something we cannot read: not JSON, ``success`` false, fields missing."""


class KhaimeConfigurationError(ImproperlyConfigured):
    """The ``KHAIME`` settings are missing or malformed."""


class KhaimeUnsafeRedirectError(KhaimeResponseError):
    """Khaime's payment_url is neither https nor an allowed origin: the buyer is not sent there."""


class WebhookError(SuspiciousOperation):
    """A webhook request that must not be processed."""


class WebhookSignatureError(WebhookError):
    """The X-Khaime-Signature header is missing or matches none of the configured secrets."""


class WebhookPayloadError(WebhookError):
    """A verified body that is not a usable event (not JSON, not an object, no event_id/type)."""


#: The names before 0.2; kept so code written against them keeps working.
KhaimeRequestInvalid = KhaimeRequestInvalidError
KhaimeUnsafeRedirect = KhaimeUnsafeRedirectError
