"""Use cases. Views, webhooks, admin and commands call these; the rules live here and in
transitions.py, HTTP to Khaime lives in client.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any, cast
from urllib.parse import urlsplit

from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.db.transaction import TransactionManagementError
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from . import signals
from .client import KhaimeClient, get_client, parse_timestamp, validate_session_request
from .conf import khaime_settings
from .exceptions import (
    KhaimeAuthenticationError,
    KhaimeConfigurationError,
    KhaimeConnectionError,
    KhaimeError,
    KhaimeRateLimitError,
    KhaimeRequestInvalid,
    KhaimeServerError,
    KhaimeUnsafeRedirect,
)
from .models import (
    AWAITING_STATUSES,
    OPEN_STATUSES,
    PAID_STATUSES,
    Mode,
    PaymentSession,
    Source,
    Status,
    WebhookEvent,
    WebhookOutcome,
)
from .transitions import can_transition, send_robust, transition, transition_many
from .webhooks import KhaimeEvent

logger = logging.getLogger(__name__)

#: metadata keys khaime-django sends itself; a merchant's metadata may not use them.
RESERVED_METADATA_KEYS = frozenset({"reference"})
_WAIT_STEP = 0.05
_MAX_INSERT_MISSES = 3


def start_checkout(
    *,
    amount: int,
    currency: str,
    customer_email: str,
    request: HttpRequest | None = None,
    product_name: str | None = None,
    product_id: int | None = None,
    metadata: Mapping[str, Any] | None = None,
    subscription_frequency_key: str | None = None,
    customer: Mapping[str, Any] | None = None,
    user=None,
    client: KhaimeClient | None = None,
) -> PaymentSession:
    """Create (or reuse) the buyer's payment session and return it; redirect the buyer to its
    ``payment_url``.

    The row is stored in ``created`` before Khaime is called, so nothing is lost if Khaime fails:
    the row then ends in ``error`` with ``last_error`` and the ``KhaimeError`` is raised. A buyer's
    still-valid pending session for the identical purchase is returned instead of a new one.
    """
    if user is None and request is not None and getattr(request, "user", None) is not None:
        user = request.user if request.user.is_authenticated else None
    metadata = dict(metadata or {})
    clash = RESERVED_METADATA_KEYS.intersection(metadata)
    if clash:
        raise KhaimeRequestInvalid(
            "metadata uses a reserved key.", details={f"metadata.{key}": "reserved by khaime-django" for key in clash}
        )
    customer = {**(customer or {}), "email": (customer_email or "").strip().lower()}
    reference = uuid.uuid4()
    success_url = _absolute_url(request, reverse("khaime:success", kwargs={"reference": reference}))
    cancel_url = _absolute_url(request, reverse("khaime:cancel", kwargs={"reference": reference}))
    khaime_request: dict[str, Any] = {
        "amount": amount,
        "currency": currency.upper() if isinstance(currency, str) else currency,
        "customer": customer,
        "success_url": success_url,
        "cancel_url": cancel_url,
        "product_id": product_id,
        "product_name": product_name or None,
        "subscription_frequency_key": subscription_frequency_key or None,
        "metadata": {**metadata, "reference": str(reference)},
    }
    # Refuse a bad request before a row exists: it is a programming error, not a payment attempt.
    validate_session_request(khaime_request)

    # A missing API key must fail before a row exists, not leave it stuck in `created`.
    client = client or get_client()
    purchase_key = _purchase_key(user, khaime_request)
    session = _insert_or_reuse(
        purchase_key,
        reference=reference,
        amount=amount,
        currency=khaime_request["currency"],
        product_id=product_id,
        product_name=product_name or "",
        customer_email=customer["email"],
        customer=customer,
        metadata=metadata,
        subscription_frequency_key=subscription_frequency_key or "",
        success_url=success_url,
        cancel_url=cancel_url,
        mode=khaime_settings.mode,
        user=user,
    )
    if session.status != Status.CREATED:
        return session  # reused: the buyer continues with the session Khaime already has

    try:
        data = client.create_session(**khaime_request)
        _check_payment_url(data["payment_url"])
    except KhaimeError as error:
        logger.error("Khaime refused or failed to create payment session %s: %s", session.reference, error)
        transition(session, Status.ERROR, source=Source.CHECKOUT, detail=str(error), last_error=str(error))
        raise
    fields = _session_fields(data, session)
    if not transition(session, Status.PENDING, source=Source.CHECKOUT, **fields):
        # Something else (a webhook matched by metadata.reference) moved the row on while we
        # waited for Khaime. Keep what Khaime told us anyway; the status stays what it is now.
        PaymentSession.objects.filter(pk=session.pk).update(**fields)
        for name, value in fields.items():
            setattr(session, name, value)
    return session


def _session_fields(data: Mapping[str, Any], session: PaymentSession) -> dict[str, Any]:
    fee_details = data.get("fee_details")
    if not isinstance(fee_details, dict):
        fee_details = {}
    total = data.get("amount", fee_details.get("total_amount"))
    return {
        "session_id": data["session_id"],
        "stripe_session_id": str(data.get("stripe_session_id") or ""),
        "payment_url": data["payment_url"],
        "mode": data.get("mode") if data.get("mode") in ("sandbox", "live") else session.mode,
        "payment_type": str(data.get("payment_type") or ""),
        "fee_details": fee_details,
        "total_amount": total if isinstance(total, int) and not isinstance(total, bool) else None,
        "expires_at": parse_timestamp(data.get("expires_at")),
    }


def _insert_or_reuse(purchase_key: str, **values: Any) -> PaymentSession:
    """INSERT the session, or hand back the open one for the same purchase.

    The partial unique index on ``purchase_key`` decides which of two racing requests inserts;
    the other one waits for that session to leave ``created`` and reuses it.
    """
    deadline = time.monotonic() + _in_flight_limit()
    misses = 0
    while True:
        try:
            # Inside a caller's transaction (ATOMIC_REQUESTS) the INSERT needs a savepoint, or the
            # IntegrityError would poison it; in autocommit a lone INSERT is its own transaction and
            # wrapping it would only add a BEGIN/COMMIT round trip to every checkout.
            with transaction.atomic() if connection.in_atomic_block else nullcontext():
                return PaymentSession.objects.create(purchase_key=purchase_key, **values)
        except IntegrityError:
            existing = PaymentSession.objects.filter(purchase_key=purchase_key, status__in=OPEN_STATUSES).first()
            if existing is None:
                # It left the open states between our INSERT and SELECT: try again. But the INSERT
                # may have broken another constraint (a CHECK), which no retry fixes: raise that
                # after a few tries instead of spinning forever.
                misses += 1
                if misses >= _MAX_INSERT_MISSES:
                    raise
                continue
        if existing.status in (Status.PENDING, Status.CANCELLED):
            if existing.payment_url and not existing.is_expired_locally:
                logger.info("Reusing %s payment session %s for the same purchase", existing.status, existing.reference)
                return existing
            transition(existing, Status.EXPIRED, source=Source.CHECKOUT, detail="expires_at passed; not reused")
            continue
        # `created`: another request is talking to Khaime for this purchase right now.
        if time.monotonic() >= deadline or existing.created_at < timezone.now() - timedelta(seconds=_in_flight_limit()):
            transition(
                existing,
                Status.ERROR,
                source=Source.CHECKOUT,
                detail="abandoned while creating",
                last_error="Abandoned while creating the Khaime session.",
            )
            continue
        time.sleep(_WAIT_STEP)


def _in_flight_limit() -> float:
    """The longest a create call can take, retries included."""
    connect, read = khaime_settings.TIMEOUT
    retries = int(khaime_settings.MAX_RETRIES)
    return (connect + read) * (retries + 1) + float(khaime_settings.BACKOFF_MAX) * retries + 1


def _purchase_key(user, khaime_request: Mapping[str, Any]) -> str:
    buyer = f"user:{user.pk}" if user is not None else f"email:{khaime_request['customer']['email']}"
    price = {
        key: khaime_request[key]
        for key in ("amount", "currency", "product_id", "product_name", "subscription_frequency_key")
    }
    price["metadata"] = {k: v for k, v in khaime_request["metadata"].items() if k not in RESERVED_METADATA_KEYS}
    blob = json.dumps([buyer, price], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _absolute_url(request: HttpRequest | None, path: str) -> str:
    if khaime_settings.SITE_URL:
        return khaime_settings.SITE_URL.rstrip("/") + path
    if request is not None:
        return request.build_absolute_uri(path)
    raise KhaimeConfigurationError(
        "start_checkout() needs request= or KHAIME['SITE_URL'] to build the success and cancel URLs."
    )


def _check_payment_url(url: str) -> None:
    """Send buyers only to https, or to an explicitly allowed origin (the emulator)."""
    parts = urlsplit(url)
    origin = f"{parts.scheme}://{parts.netloc}"
    if parts.scheme == "https" and parts.netloc:
        return
    if origin in khaime_settings.allowed_payment_origins():
        return
    raise KhaimeUnsafeRedirect(
        "Khaime's payment_url is not an https URL; the buyer was not sent there.", details={"payment_url": url[:200]}
    )


def refresh_session(
    session: PaymentSession,
    *,
    source: str = Source.RETURN,
    timeout: tuple[float, float] | None = None,
    client: KhaimeClient | None = None,
) -> PaymentSession:
    """Ask Khaime for the session's status and apply it. Raises ``KhaimeError`` if Khaime can't say."""
    if not session.session_id:
        return session
    data = (client or get_client()).get_session(session.session_id, timeout=timeout)
    apply_khaime_status(session, data, source=source)
    return session


def refresh_if_due(session: PaymentSession, *, source: str = Source.RETURN) -> bool:
    """``refresh_session`` at most once per STATUS_REFRESH_INTERVAL per session (the return and
    status pages are reloaded and polled; Khaime allows 1,000 requests an hour per key).

    Khaime errors are logged, not raised. Returns False only when Khaime was asked and could not
    answer (the page then says it could not confirm yet)."""
    if session.is_final or session.status == Status.ERROR or not session.session_id:
        return True
    interval = timedelta(seconds=khaime_settings.STATUS_REFRESH_INTERVAL)
    if session.last_checked_at and session.last_checked_at > timezone.now() - interval:
        return True
    try:
        refresh_session(session, source=source, timeout=khaime_settings.RETURN_TIMEOUT)
    except KhaimeError as error:
        logger.warning("Could not ask Khaime about payment session %s: %s", session.reference, error)
        # A failed attempt counts too: otherwise, while Khaime is down or rate limiting us, every
        # poll of every open status page becomes a Khaime request (with retries).
        session.last_checked_at = timezone.now()
        PaymentSession.objects.filter(pk=session.pk).update(last_checked_at=session.last_checked_at)
        return False
    return True


def apply_khaime_status(session: PaymentSession, data: Mapping[str, Any], *, source: str, detail: str = "") -> bool:
    """Apply what ``GET /payments/sessions/{id}`` said. Returns True when the status changed."""
    now = timezone.now()
    remote = data.get("status")
    detail = detail or f"Khaime says {remote}"
    changed = False
    if remote == "completed":
        changed = transition(
            session,
            Status.COMPLETED,
            source=source,
            detail=detail,
            completed_at=parse_timestamp(data.get("completed_at")) or now,
            last_checked_at=now,
        )
    elif remote == "failed":
        changed = transition(session, Status.FAILED, source=source, detail=detail, last_checked_at=now)
    elif remote == "expired":
        changed = transition(session, Status.EXPIRED, source=source, detail=detail, last_checked_at=now)
    elif remote != "pending":
        logger.warning("Khaime reported unknown status %r for payment session %s", remote, session.reference)
    if not changed:
        PaymentSession.objects.filter(pk=session.pk).update(last_checked_at=now)
        session.last_checked_at = now
    return changed


def cancel_session(session: PaymentSession) -> bool:
    """The buyer came back through cancel_url. Khaime still accepts payment until expires_at,
    so a later ``completed`` is still applied."""
    return transition(
        session, Status.CANCELLED, source=Source.CANCEL, detail="buyer cancelled", cancelled_at=timezone.now()
    )


# -- webhooks -------------------------------------------------------------------------------------

#: The payment events we apply, and the status each one means.
WEBHOOK_STATUS = {
    "payment.succeeded": Status.COMPLETED,
    "payment.failed": Status.FAILED,
    "payment.refunded": Status.REFUNDED,
    "payment.disputed": Status.DISPUTED,
}
#: A stored event with one of these outcomes is applied on its next delivery; any other outcome
#: means it was processed, and another delivery is answered "duplicate" and changes nothing.
#: Only an event that was processed counts as processed: one that failed on our side is retried.
RETRY_OUTCOMES = frozenset({WebhookOutcome.RECEIVED, WebhookOutcome.ERROR})
_MAX_ERROR_TEXT = 10_000


def handle_webhook_event(event: KhaimeEvent) -> str:
    """Record and apply a verified event in one transaction, as the webhook view does; returns
    this delivery's outcome. For events that reach you another way (a queue, a replay)."""
    with transaction.atomic():
        record = record_webhook_event(event)
        return apply_webhook_event(record)


def record_webhook_event(event: KhaimeEvent) -> WebhookEvent:
    """Store a verified event in the inbox, or count one more delivery of one already there.
    Call inside a transaction: the row stays locked until it ends.

    The unique ``event_id``, not a read-then-write, decides which of two concurrent deliveries
    inserts. The other one's INSERT waits for that transaction to end, fails, and then reads the
    row with the outcome it committed, so it answers "duplicate" instead of applying again.
    The INSERT comes first because most deliveries are new: they then cost one statement, not a
    locking SELECT as well; only a redelivery pays for the failed INSERT.
    """
    try:
        with transaction.atomic():  # a savepoint: a failed INSERT must not poison the transaction
            return WebhookEvent.objects.create(
                event_id=event.event_id,
                event_type=event.event_type,
                api_version=event.api_version,
                is_live=event.is_live,
                payload=event.payload,
            )
    except IntegrityError:
        # The row exists and its inserter has committed (or our INSERT would still be waiting).
        record = WebhookEvent.objects.select_for_update().get(event_id=event.event_id)
    WebhookEvent.objects.filter(pk=record.pk).update(deliveries=F("deliveries") + 1)
    record.deliveries += 1
    return record


def apply_webhook_event(record: WebhookEvent, *, source: str = Source.WEBHOOK, again: bool = False) -> str:
    """Apply a recorded event to its session, once. Call inside the transaction that locked
    ``record`` (:func:`record_webhook_event`, or :func:`apply_webhook_event_again`). Returns this
    delivery's outcome: ``duplicate`` when the event was processed before, else the outcome now
    stored on it. ``again=True`` also re-applies an ``unmatched`` event.

    Our own failure is stored as ``error`` with the traceback, never raised: the view answers
    500 and Khaime's retry of the same event_id applies it again.
    """
    if not transaction.get_connection().in_atomic_block:
        raise TransactionManagementError("apply_webhook_event() needs the transaction that locked the event.")
    retryable = RETRY_OUTCOMES | ({WebhookOutcome.UNMATCHED} if again else set())
    if record.outcome not in retryable:
        return WebhookOutcome.DUPLICATE
    try:
        with transaction.atomic():
            outcome, session, detail = _apply_event(record, source=source, on_receiver_errors=_ReceiverErrors(record))
        error = ""
    except Exception as exc:
        # Leaving the block above rolled back to its savepoint whatever the apply had changed
        # (status, log row, pending signals). The event row, written before the savepoint, stays
        # and commits with this error, so the admin sees it and Khaime's retry applies it again.
        logger.exception("Applying Khaime webhook event %s failed", record.event_id)
        outcome, session, detail = WebhookOutcome.ERROR, None, ""
        error = "".join(traceback.format_exception(exc))[-_MAX_ERROR_TEXT:]
    record.outcome, record.session, record.detail = outcome, session, detail[:_MAX_ERROR_TEXT]
    record.error, record.processed_at = error, timezone.now()
    record.save(update_fields=["outcome", "session", "detail", "error", "processed_at"])
    return outcome


def apply_webhook_event_again(record: WebhookEvent, *, source: str = Source.ADMIN) -> str:
    """The admin's "Apply again": re-apply a stored event that ended in error or unmatched."""
    with transaction.atomic():
        locked = WebhookEvent.objects.select_for_update().get(pk=record.pk)
        return apply_webhook_event(locked, source=source, again=True)


def _apply_event(record: WebhookEvent, *, source: str, on_receiver_errors) -> tuple[str, PaymentSession | None, str]:
    """(outcome, matched session, detail) of applying ``record``'s event; runs in a transaction."""
    event = KhaimeEvent.from_payload(record.payload, api_version_header=record.api_version)
    target = WEBHOOK_STATUS.get(event.event_type)
    if target is None:
        return WebhookOutcome.IGNORED, None, f"{event.event_type} is not an event khaime-django applies"
    session = match_session(event)
    if session is None:
        return (
            WebhookOutcome.UNMATCHED,
            None,
            (
                f"no payment session with reference {event.reference} or Khaime session id "
                f"{', '.join(event.session_ids) or 'None'}"
            ),
        )
    why = f"{event.event_type} {event.event_id}"
    reasons = review_reasons(session, event) if target == Status.COMPLETED else []
    flagged = _flag_for_review(session, f"{why}: {'; '.join(reasons)}") if reasons else False
    changed = False
    if target in (Status.COMPLETED, Status.REFUNDED, Status.DISPUTED) and session.status not in PAID_STATUSES:
        # Khaime refunds and disputes only money it received: a refund or dispute arriving first
        # means payment.succeeded is late or lost. Record the payment, then the refund, so the
        # history is whole and a late payment.succeeded finds its news already applied.
        changed = transition(
            session,
            Status.COMPLETED,
            source=source,
            detail=why,
            on_receiver_errors=on_receiver_errors,
            completed_at=event.paid_at or timezone.now(),
        )
    if target != Status.COMPLETED:
        changed = (
            transition(session, target, source=source, detail=why, on_receiver_errors=on_receiver_errors) or changed
        )
    if flagged:
        # After the transition's own on-commit signals: payment_completed first, then this.
        transaction.on_commit(partial(_send_needs_review, session, session.review_reason, record, on_receiver_errors))
    notes = [f"needs review: {'; '.join(reasons)}"] if reasons else []
    if changed:
        return WebhookOutcome.APPLIED, session, "; ".join([f"session is now {session.status}", *notes])
    already = session.status == target or (target == Status.COMPLETED and session.status in PAID_STATUSES)
    if already:
        return WebhookOutcome.DUPLICATE, session, "; ".join([f"session was already {session.status}", *notes])
    return (
        WebhookOutcome.IGNORED,
        session,
        "; ".join(
            [f"session is {session.status}; the status machine does not allow {session.status} -> {target}", *notes]
        ),
    )


def match_session(event: KhaimeEvent) -> PaymentSession | None:
    """The session an event is about: by ``data.metadata.reference`` (ours, sent at creation),
    then by Khaime's session id."""
    lookups: list[dict[str, Any]] = [{"reference": event.reference}] if event.reference is not None else []
    lookups += [{"session_id": session_id} for session_id in event.session_ids]
    for lookup in lookups:
        try:  # get(), not first(): both keys are unique, and first() would add an ORDER BY
            return PaymentSession.objects.get(**lookup)
        except PaymentSession.DoesNotExist:
            continue
    return None


def review_reasons(session: PaymentSession, event: KhaimeEvent) -> list[str]:
    """Why a payment Khaime reports for ``session`` needs a human look: amount, currency or
    environment differ from what we asked for. A field the event does not carry is not checked."""
    reasons = []
    paid = event.paid
    if paid is not None:
        expected = session.total_amount if session.total_amount is not None else session.amount
        amount, currency = paid
        if currency != session.currency.upper():
            reasons.append(f"paid in {currency}, but the session is in {session.currency}")
        elif amount != expected:
            reasons.append(f"paid {amount} {currency}, but the session expects {expected} {session.currency}")
    if event.is_live is not None and event.is_live != (session.mode == Mode.LIVE):
        reasons.append(f"a {'live' if event.is_live else 'sandbox'} event for a {session.mode} session")
    return reasons


def _flag_for_review(session: PaymentSession, reason: str) -> bool:
    """Mark ``session`` needs_review (money is never refused: the payment is applied anyway).
    True when this call flagged it; the caller then sends ``payment_needs_review`` on commit."""
    logger.warning("Payment session %s needs review: %s", session.reference, reason)
    # Conditional, so two events for one session cannot both flag it and signal twice.
    flagged = PaymentSession.objects.filter(pk=session.pk, needs_review=False).update(
        needs_review=True, review_reason=reason, updated_at=timezone.now()
    )
    if flagged:
        # Before the commit: payment_completed's receivers get this object and may check it.
        session.needs_review, session.review_reason = True, reason
    return bool(flagged)


def _send_needs_review(session: PaymentSession, reason: str, record: WebhookEvent, on_receiver_errors) -> None:
    errors = send_robust(signals.payment_needs_review, session=session, reason=reason, event=record)
    if errors:
        on_receiver_errors(errors)


class _ReceiverErrors:
    """Records on the event what merchant receivers raised. Called after the commit, so it
    writes on its own; a receiver's exception never turns the acknowledgement into an error."""

    def __init__(self, record: WebhookEvent):
        self.record = record
        self.lines: list[str] = []

    def __call__(self, errors: list[BaseException]) -> None:
        for error in errors:
            logger.error(
                "A signal receiver raised while applying Khaime webhook event %s: %r",
                self.record.event_id,
                error,
                exc_info=error,
            )
            self.lines.append(f"signal receiver raised {type(error).__name__}: {error}")
        self.record.error = "\n".join(self.lines)[:_MAX_ERROR_TEXT]
        try:
            WebhookEvent.objects.filter(pk=self.record.pk).update(error=self.record.error)
        except Exception:  # never let bookkeeping fail the commit hooks that follow
            logger.exception("Could not record receiver errors on webhook event %s", self.record.event_id)


# -- reconciliation -------------------------------------------------------------------------------

#: What GET /payments/sessions says -> the status it would move a session to.
_REMOTE_STATUS = {"completed": Status.COMPLETED, "failed": Status.FAILED, "expired": Status.EXPIRED}
EXPIRE_BATCH_SIZE = 1000


@dataclass
class SyncReport:
    """What one khaime_sync run did; ``summary()`` is its last line."""

    dry_run: bool = False
    requests: int = 0
    checked: int = 0
    changed: Counter = field(default_factory=Counter)
    errors: int = 0
    #: Requests that got no usable answer (connection refused, timeout, 5xx).
    unanswered: int = 0
    stopped: str = ""
    #: --offline: sessions expired (or that would be) past expires_at + grace, Khaime not asked.
    offline: bool = False
    expired_offline: int = 0

    @property
    def unreachable(self) -> bool:
        """Khaime could not be used at all: nothing answered, or it refused our key."""
        return self.stopped == "Khaime refused the API key" or (self.requests > 0 and self.unanswered == self.requests)

    def summary(self) -> str:
        if self.offline:
            verb = "would expire" if self.dry_run else "expired"
            return f"khaime_sync --offline: {verb} {self.expired_offline} sessions past expires_at, requests 0"
        verb = "would change" if self.dry_run else "changed"
        changed = sum(self.changed.values())
        per_status = ", ".join(f"{status} {count}" for status, count in sorted(self.changed.items()))
        parts = [
            f"checked {self.checked}",
            f"{verb} {changed}" + (f" ({per_status})" if per_status else ""),
            f"errors {self.errors}",
            f"requests {self.requests}",
        ]
        line = "khaime_sync: " + ", ".join(parts)
        if self.stopped:
            line += f"; stopped early: {self.stopped}"
        return line + (" (dry run: nothing was changed)" if self.dry_run else "")


def sync_sessions(
    *,
    budget: int = 100,
    grace: timedelta | None = None,
    dry_run: bool = False,
    client: KhaimeClient | None = None,
    report: SyncReport | None = None,
    on_change: Callable[[PaymentSession, str, str], None] | None = None,
) -> SyncReport:
    """Ask Khaime about sessions still pending or cancelled ``grace`` after creation, newest
    first, and apply the answers, spending at most ``budget`` requests (Khaime allows 1,000 an
    hour per key). Stops at the first 429. A session asked about within ``grace`` is skipped, so
    successive runs work through a backlog instead of re-asking about the newest ones.

    ``client`` defaults to one that never retries: one request per session, so the budget is
    exact, and a failure waits for the next run rather than spending more of the hour's quota.
    """
    report = report or SyncReport(dry_run=dry_run)
    grace = khaime_settings.SYNC_GRACE if grace is None else grace
    client = client or _sync_client()
    cutoff = timezone.now() - grace
    due = (
        PaymentSession.objects.filter(status__in=AWAITING_STATUSES, session_id__isnull=False, created_at__lte=cutoff)
        .filter(Q(last_checked_at__isnull=True) | Q(last_checked_at__lte=cutoff))
        .order_by("-created_at", "-pk")
    )
    for session in due[: max(budget, 0)].iterator(chunk_size=100):
        report.requests += 1
        try:
            # The query took only sessions with a session_id.
            data = client.get_session(cast(str, session.session_id))
        except KhaimeRateLimitError:
            report.stopped = "Khaime rate limit (429)"
            break
        except KhaimeAuthenticationError as error:
            report.errors += 1
            report.stopped = "Khaime refused the API key"
            logger.error("khaime_sync: %s", error)
            break
        except (KhaimeConnectionError, KhaimeServerError) as error:
            report.errors += 1
            report.unanswered += 1
            logger.warning("khaime_sync: could not ask Khaime about session %s: %s", session.reference, error)
            continue
        except KhaimeError as error:
            report.errors += 1
            logger.warning("khaime_sync: Khaime could not say about session %s: %s", session.reference, error)
            continue
        report.checked += 1
        before = session.status
        if dry_run:
            target = _REMOTE_STATUS.get(data.get("status", ""))
            if target is not None and can_transition(before, target):
                report.changed[target] += 1
                if on_change:
                    on_change(session, before, target)
        elif apply_khaime_status(session, data, source=Source.SYNC):
            report.changed[session.status] += 1
            if on_change:
                on_change(session, before, session.status)
    return report


def _sync_client() -> KhaimeClient:
    return KhaimeClient(
        khaime_settings.API_KEY,
        khaime_settings.API_BASE_URL,
        timeout=tuple(khaime_settings.TIMEOUT),
        max_retries=0,
    )


def expire_stale(
    *,
    grace: timedelta | None = None,
    dry_run: bool = False,
    batch_size: int = EXPIRE_BATCH_SIZE,
) -> int:
    """Expire, without asking Khaime, sessions still pending or cancelled ``grace`` past their
    ``expires_at``. Returns how many were (or, with ``dry_run``, would be) expired.

    Works in primary-key batches (keyset pagination) through ``transition_many``, so memory stays
    bounded however many sessions are stale and each batch commits (and signals) on its own.
    A payment Khaime reports later still completes an expired session.
    """
    grace = khaime_settings.SYNC_GRACE if grace is None else grace
    stale = PaymentSession.objects.filter(status__in=AWAITING_STATUSES, expires_at__lt=timezone.now() - grace).order_by(
        "pk"
    )
    if dry_run:
        return stale.count()
    expired = 0
    last_pk = 0
    while True:
        # One keyset page, locked and changed by transition_many; each page commits on its own.
        changed = transition_many(
            stale.filter(pk__gt=last_pk)[:batch_size], Status.EXPIRED, source=Source.SYNC, detail="expires_at passed"
        )
        if not changed:
            return expired
        expired += len(changed)
        last_pk = changed[-1]


# -- housekeeping ---------------------------------------------------------------------------------

#: Outcomes khaime_prune_events deletes; error/unmatched/received ones stay for a human unless asked.
PRUNABLE_OUTCOMES = (WebhookOutcome.APPLIED, WebhookOutcome.IGNORED, WebhookOutcome.DUPLICATE)
PRUNE_BATCH_SIZE = 1000


def prune_webhook_events(
    *, older_than: timedelta, include_failed: bool = False, dry_run: bool = False, batch_size: int = PRUNE_BATCH_SIZE
) -> int:
    """Delete webhook events received more than ``older_than`` ago, in batches (short locks,
    bounded memory). Returns how many were (or would be) deleted.

    Deleting an event also forgets its event_id, so keep ``older_than`` well beyond Khaime's
    retry window (3 attempts, 2 s apart) — days, not minutes.
    """
    old = WebhookEvent.objects.filter(received_at__lt=timezone.now() - older_than)
    if not include_failed:
        old = old.filter(outcome__in=PRUNABLE_OUTCOMES)
    if dry_run:
        return old.count()
    deleted = 0
    while True:
        ids = list(old.order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not ids:
            return deleted
        deleted += WebhookEvent.objects.filter(pk__in=ids).delete()[0]
