"""The webhook inbox: one :class:`WebhookEvent` per verified event Khaime sent (its unique
``event_id`` is the de-duplication), and the :class:`WebhookOutcome` applying it had."""

from __future__ import annotations

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .sessions import PaymentSession


class WebhookOutcome(models.TextChoices):
    RECEIVED = "received", _("Received")  # stored, not applied yet (or the apply was interrupted)
    APPLIED = "applied", _("Applied")  # changed the session's status
    DUPLICATE = "duplicate", _("Duplicate")  # the session already had this news (another event or path)
    IGNORED = "ignored", _("Ignored")  # a type we do not handle, or a change the status machine refuses
    UNMATCHED = "unmatched", _("Unmatched")  # no session with that reference or Khaime session id
    ERROR = "error", _("Error")  # our own failure; the next delivery applies it again


class WebhookEvent(models.Model):
    """The inbox of verified webhook events. ``event_id`` is unique: that is the de-duplication."""

    event_id = models.CharField(_("event id"), max_length=255, unique=True)
    event_type = models.CharField(_("event type"), max_length=64)
    api_version = models.CharField(_("API version"), max_length=32, blank=True)
    is_live = models.BooleanField(_("live"), null=True)
    payload = models.JSONField(_("payload"))
    received_at = models.DateTimeField(_("received at"), default=timezone.now)
    processed_at = models.DateTimeField(_("processed at"), null=True, blank=True)
    outcome = models.CharField(
        _("outcome"), max_length=16, choices=WebhookOutcome.choices, default=WebhookOutcome.RECEIVED
    )
    error = models.TextField(_("error"), blank=True)
    detail = models.TextField(
        _("detail"), blank=True, help_text=_("What applying the event did, or why it changed nothing.")
    )
    deliveries = models.PositiveIntegerField(_("deliveries"), default=1)
    redacted_at = models.DateTimeField(
        _("personal data redacted at"),
        null=True,
        blank=True,
        help_text=_("When khaime_prune_events removed the customer's personal data from the payload."),
    )
    session = models.ForeignKey(
        PaymentSession,
        verbose_name=_("payment session"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="webhook_events",
    )

    class Meta:
        verbose_name = _("webhook event")
        verbose_name_plural = _("webhook events")
        ordering = ["-received_at"]
        indexes = [
            models.Index(fields=["outcome", "received_at"], name="khaime_event_outcome"),
            models.Index(fields=["event_type"], name="khaime_event_type"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id}"
