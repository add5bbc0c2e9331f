"""The status histories' common part: :class:`Source` (which path made a change) and the
abstract :class:`StatusHistory` row that the session, subscription and refund histories extend."""

from __future__ import annotations

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class Source(models.TextChoices):
    CHECKOUT = "checkout", _("Checkout")
    RETURN = "return", _("Success return")
    CANCEL = "cancel", _("Cancel return")
    WEBHOOK = "webhook", _("Webhook")
    SYNC = "sync", _("Reconciliation")
    ADMIN = "admin", _("Admin")


class StatusHistory(models.Model):
    """One row per real status change of a stateful model, whatever path caused it; written only by
    ``transitions.transition``. A history adds its foreign key (``related_name="status_changes"``),
    ``from_status`` and ``to_status`` with its machine's choices, and its verbose names in a
    ``Meta(StatusHistory.Meta)``, which keeps the ordering."""

    source = models.CharField(_("source"), max_length=16, choices=Source.choices)
    detail = models.TextField(_("detail"), blank=True)
    created_at = models.DateTimeField(_("when"), default=timezone.now)

    # Each history declares these, with its own machine's choices.
    from_status: str
    to_status: str

    class Meta:
        abstract = True
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"{self.from_status} -> {self.to_status} ({self.source})"
