"""Signals for merchants. Each fires once, after the database commit, and only when the status
really changed (a retried webhook or a second page load sends nothing).

Every signal is sent with ``sender=PaymentSession`` and the keyword arguments
``session`` (the PaymentSession), ``from_status``, ``to_status`` and ``source``
(checkout / return / cancel / webhook / sync / admin). Receivers that raise are logged and
never undo the change nor fail the request that caused it.

    from django.dispatch import receiver
    from khaime_django.signals import payment_completed

    @receiver(payment_completed)
    def fulfil_order(sender, session, **kwargs):
        ...
"""

from django.dispatch import Signal

payment_session_created = Signal()  # created -> pending: Khaime accepted the session
payment_completed = Signal()
payment_failed = Signal()
payment_expired = Signal()
payment_cancelled = Signal()
payment_refunded = Signal()
payment_disputed = Signal()
payment_checkout_error = Signal()  # created -> error: Khaime refused or could not be reached
#: Every change, whatever the status (sent in addition to the specific signal).
payment_status_changed = Signal()
#: Money arrived but something does not match (amount, currency, live/sandbox): look at it.
#: Keyword arguments: ``session``, ``reason``, ``event`` (the WebhookEvent, or None).
payment_needs_review = Signal()

# -- subscriptions ---------------------------------------------------------------------------------
# Sent with ``sender=Subscription`` and ``subscription``, once per real change, after the commit.
# Status signals also get ``from_status``, ``to_status`` and ``source``.

#: A subscription khaime-django did not know is recorded (whichever event or sync found it).
subscription_created = Signal()
#: -> active (first activation, a paid ``due``, a resume).
subscription_activated = Signal()
#: -> trialing.
subscription_trial_started = Signal()
#: A renewal payment is recorded. Keyword arguments: ``subscription``, ``payment`` (the Payment).
subscription_renewed = Signal()
#: -> due: a renewal payment failed.
subscription_payment_failed = Signal()
#: -> paused.
subscription_paused = Signal()
#: -> cancelled (access lasts until ``next_payment_date``).
subscription_cancelled = Signal()
#: -> expired.
subscription_expired = Signal()
#: ``subscription.trial_ending``: once per trial end date. Keyword arguments: ``subscription``.
subscription_trial_ending = Signal()
#: Every status change of a subscription (sent in addition to the specific signal).
subscription_status_changed = Signal()

# -- refunds ---------------------------------------------------------------------------------------
# Sent with ``sender=Refund`` and ``refund`` (its ``payment`` is the Payment refunded), once per
# real change, after the commit. Status signals also get ``from_status``, ``to_status`` and
# ``source``.

#: A refund was asked for through khaime-django and stored, before Khaime is called.
refund_requested = Signal()
#: -> processing: Khaime accepted the refund.
refund_processing = Signal()
#: -> unknown: the request was sent but no answer came back; Khaime may have refunded.
refund_unknown = Signal()
#: -> completed: Khaime says the money went back (``refund.completed``), including a refund made
#: in Khaime's dashboard, recorded when its webhook arrives.
refund_completed = Signal()
#: -> failed: Khaime refused the refund, could not be reached, or an operator marked it failed.
refund_failed = Signal()
#: Every status change of a refund (sent in addition to the specific signal).
refund_status_changed = Signal()
