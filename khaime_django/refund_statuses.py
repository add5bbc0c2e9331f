"""Everything khaime-django knows about a refund's status.

A refund we ask for is stored ``requested`` before Khaime is called. Khaime's answer moves it to
``processing``; its ``refund.completed`` webhook to ``completed``. Khaime refusing the request
(or never being reached) makes it ``failed``. A timeout or a 5xx after the request was sent
makes it ``unknown``: Khaime may have moved the money, so it still counts against what remains
refundable until later news (the webhook, or an operator who checked Khaime's dashboard)
settles it.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class RefundStatus(models.TextChoices):
    REQUESTED = "requested", _("Requested")
    PROCESSING = "processing", _("Processing")
    COMPLETED = "completed", _("Completed")
    FAILED = "failed", _("Failed")
    UNKNOWN = "unknown", _("Unknown: check Khaime")


class RefundOrigin(models.TextChoices):
    DJANGO = "django", _("khaime-django (admin or code)")
    KHAIME = "khaime", _("Khaime (dashboard)")


#: to_status -> the statuses it may be reached from. ``completed`` may come straight from
#: ``requested``: Khaime's webhook can overtake the answer to our own POST.
REFUND_ALLOWED_FROM: dict[str, frozenset[str]] = {
    RefundStatus.PROCESSING: frozenset({RefundStatus.REQUESTED, RefundStatus.UNKNOWN}),
    RefundStatus.UNKNOWN: frozenset({RefundStatus.REQUESTED}),
    RefundStatus.COMPLETED: frozenset({RefundStatus.REQUESTED, RefundStatus.PROCESSING, RefundStatus.UNKNOWN}),
    RefundStatus.FAILED: frozenset({RefundStatus.REQUESTED, RefundStatus.PROCESSING, RefundStatus.UNKNOWN}),
}

#: Refunds in these states count against what remains refundable (every one but ``failed``).
COUNTED_STATUSES = (
    RefundStatus.REQUESTED,
    RefundStatus.PROCESSING,
    RefundStatus.COMPLETED,
    RefundStatus.UNKNOWN,
)
#: Refunds whose outcome is still open: Khaime's news may still settle them.
OPEN_REFUND_STATUSES = (RefundStatus.REQUESTED, RefundStatus.PROCESSING, RefundStatus.UNKNOWN)
