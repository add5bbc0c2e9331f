"""Everything khaime-django knows about a payment session's status, in one place: the statuses,
the sets callers ask about, the allowed transitions, and what Khaime's words map to.

``transitions.py`` enforces the machine; every other module asks these names instead of spelling
its own set of statuses.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class Status(models.TextChoices):
    CREATED = "created", _("Created")
    PENDING = "pending", _("Pending")
    CANCELLED = "cancelled", _("Cancelled")
    COMPLETED = "completed", _("Completed")
    FAILED = "failed", _("Failed")
    EXPIRED = "expired", _("Expired")
    REFUNDED = "refunded", _("Refunded")
    DISPUTED = "disputed", _("Disputed")
    ERROR = "error", _("Error")


#: A buyer may still pay (or be sent to pay) a session in these states until it expires, so a new
#: Buy for the same purchase reuses it: a cancelled session is still payable at Khaime, and a
#: second session beside it would let a buyer with two tabs pay twice.
OPEN_STATUSES = (Status.CREATED, Status.PENDING, Status.CANCELLED)
#: Khaime may still report a payment for a session in these states; khaime_sync asks about them,
#: and the buyer may be sent (back) to Khaime's payment page.
AWAITING_STATUSES = (Status.PENDING, Status.CANCELLED)
#: Khaime may still report a payment for these "final" statuses (a declined card retried on the
#: same hosted page; an expiry decided without asking Khaime): khaime_sync and the success page
#: keep asking within RECHECK_LOOKBACK.
RECHECKED_STATUSES = (Status.FAILED, Status.EXPIRED)
#: Money was received.
PAID_STATUSES = (Status.COMPLETED, Status.REFUNDED, Status.DISPUTED)
#: No buyer action can change a session in these states any more (the status page stops polling).
FINAL_STATUSES = (
    Status.COMPLETED,
    Status.FAILED,
    Status.EXPIRED,
    Status.REFUNDED,
    Status.DISPUTED,
    Status.ERROR,
)

#: to_status -> the statuses it may be reached from (each edge is tested in tests/test_transitions.py).
ALLOWED_FROM: dict[str, frozenset[str]] = {
    Status.PENDING: frozenset({Status.CREATED}),
    Status.ERROR: frozenset({Status.CREATED}),
    Status.CANCELLED: frozenset({Status.PENDING}),
    # Money received is never dropped: Khaime's "completed" wins over any unpaid state, even
    # `error` (a create that timed out on our side may still have reached the buyer).
    Status.COMPLETED: frozenset(
        {Status.CREATED, Status.PENDING, Status.CANCELLED, Status.FAILED, Status.EXPIRED, Status.ERROR}
    ),
    # `expired` too: khaime_sync --offline expires a session without asking Khaime, which may
    # have declined the buyer's card before that; its "failed" is the better answer. Never the
    # other way (a failed session stays failed), so the two cannot undo each other.
    Status.FAILED: frozenset({Status.PENDING, Status.CANCELLED, Status.EXPIRED}),
    Status.EXPIRED: frozenset({Status.PENDING, Status.CANCELLED}),
    Status.REFUNDED: frozenset({Status.COMPLETED, Status.DISPUTED}),
    Status.DISPUTED: frozenset({Status.COMPLETED}),
}

#: What ``GET /payments/sessions/{id}`` says -> the status it moves a session to. ``pending``
#: moves nothing; any other word is unknown and logged.
REMOTE_STATUS: dict[str, str] = {
    "completed": Status.COMPLETED,
    "failed": Status.FAILED,
    "expired": Status.EXPIRED,
}
REMOTE_STATUS_UNCHANGED = frozenset({"pending"})

#: The payment webhook events we apply, and the status each one means.
WEBHOOK_STATUS: dict[str, str] = {
    "payment.succeeded": Status.COMPLETED,
    "payment.failed": Status.FAILED,
    "payment.refunded": Status.REFUNDED,
    "payment.disputed": Status.DISPUTED,
}


def can_transition(from_status: str, to_status: str) -> bool:
    return from_status != to_status and from_status in ALLOWED_FROM.get(to_status, ())
