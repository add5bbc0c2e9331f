"""Checkout: create (or reuse) the buyer's payment session, and the buyer's cancel return."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
import uuid
from collections.abc import Mapping
from contextlib import nullcontext
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.db import IntegrityError, connection, transaction
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from ..client import KhaimeClient, get_client, longest_call
from ..conf import khaime_settings
from ..exceptions import (
    KhaimeCheckoutInProgressError,
    KhaimeConfigurationError,
    KhaimeError,
    KhaimeRequestInvalidError,
    KhaimeUnsafeRedirectError,
)
from ..models import PaymentSession, Source
from ..purchases import Purchase
from ..return_urls import require_safe_return_urls
from ..session_request import SessionRequest
from ..statuses import AWAITING_STATUSES, OPEN_STATUSES, Status
from ..timestamps import parse_timestamp
from ..transitions import transition
from . import buyers

logger = logging.getLogger(__name__)

#: metadata keys khaime-django sends itself; a merchant's metadata may not use them.
RESERVED_METADATA_KEYS = frozenset({"reference"})
_WAIT_STEP = 0.05
_MAX_INSERT_MISSES = 3
#: The detail and last_error of a row left in `created` by a request that died.
ABANDONED_DETAIL = "abandoned while creating"
ABANDONED_ERROR = "Abandoned while creating the Khaime session."


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
) -> PaymentSession:
    """Create (or reuse) the buyer's payment session and return it; redirect the buyer to its
    ``payment_url``.

    The row is stored in ``created`` before Khaime is called, so nothing is lost if Khaime fails:
    the row then ends in ``error`` with ``last_error`` and the ``KhaimeError`` is raised. A buyer's
    still-valid pending session for the identical purchase is returned instead of a new one:
    the same logged-in ``user``, or, for a guest, the same browser (``request.session``) and email.
    """
    if user is None:
        user = buyers.authenticated_user(request)
    metadata = dict(metadata or {})
    clash = RESERVED_METADATA_KEYS.intersection(metadata)
    if clash:
        raise KhaimeRequestInvalidError(
            "metadata uses a reserved key.", details={f"metadata.{key}": "reserved by khaime-django" for key in clash}
        )
    customer = {**(customer or {}), "email": (customer_email or "").strip().lower()}
    price = Purchase.build(
        amount=amount,
        currency=currency,
        product_name=product_name,
        product_id=product_id,
        subscription_frequency_key=subscription_frequency_key,
        metadata=metadata,
    )
    reference = uuid.uuid4()
    # Refuse a bad request before a row exists: it is a programming error, not a payment attempt.
    khaime_request = price.session_request(
        customer=customer,
        success_url=_absolute_url(request, reverse("khaime:success", kwargs={"reference": reference})),
        cancel_url=_absolute_url(request, reverse("khaime:cancel", kwargs={"reference": reference})),
        reference=str(reference),
    )

    mode = khaime_settings.mode
    browser = buyers.buyer_key(buyers.browser_token(request, create=True))
    # A live buyer must come back over https to a public host: refuse before a row exists.
    require_safe_return_urls(mode, khaime_request.success_url, khaime_request.cancel_url)
    # A missing API key must fail before a row exists, not leave it stuck in `created`.
    client = get_client()
    session = _insert_or_reuse(
        _purchase_key(user, browser, khaime_request, mode),
        client,
        reference=reference,
        amount=khaime_request.amount,
        currency=khaime_request.currency,
        product_id=khaime_request.product_id,
        product_name=khaime_request.product_name or "",
        customer_email=customer["email"],
        customer=customer,
        metadata=metadata,
        subscription_frequency_key=khaime_request.subscription_frequency_key or "",
        success_url=khaime_request.success_url,
        cancel_url=khaime_request.cancel_url,
        mode=mode,
        user=user,
        buyer_key=browser,
    )
    if session.status != Status.CREATED:
        return session  # reused: the buyer continues with the session Khaime already has

    data: Mapping[str, Any] | None = None
    try:
        data = client.create_session(khaime_request)
        _check_payment_url(data["payment_url"])
        fields = _session_fields(data, session)
        if not transition(session, Status.PENDING, source=Source.CHECKOUT, **fields):
            # Something else (a webhook matched by metadata.reference) moved the row on while we
            # waited for Khaime. Keep what Khaime told us anyway; the status stays what it is now.
            PaymentSession.objects.filter(pk=session.pk).update(**fields)
            for name, value in fields.items():
                setattr(session, name, value)
    except KhaimeError as error:
        logger.error("Khaime refused or failed to create payment session %s: %s", session.reference, error)
        _give_up(session, str(error), data)
        raise
    except Exception as error:
        # Whatever failed after the INSERT, the row must not stay `created`: that would block the
        # buyer's next Buy for the in-flight wait and leave the session for no one to finish.
        logger.exception("Creating payment session %s failed", session.reference)
        _give_up(session, f"{type(error).__name__}: {error}", data)
        raise
    return session


def _give_up(session: PaymentSession, reason: str, created: Mapping[str, Any] | None = None) -> None:
    """Move a session still ``created`` to ``error`` with ``reason``; never raises over the
    exception the caller is handling. When Khaime had already created the session (``created``,
    its answer), the row keeps Khaime's ``session_id``: one local row per Khaime session, and
    reconciliation and the admin can still ask Khaime about it."""
    session_id = created.get("session_id") if isinstance(created, Mapping) else None
    try:
        if not connection.in_atomic_block:
            # The failure may have been the database connection dropping: a broken connection is
            # closed here, so the UPDATE below opens a fresh one instead of failing on it too.
            connection.close_if_unusable_or_obsolete()
        if isinstance(session_id, str) and session_id:
            try:
                with transaction.atomic():
                    transition(
                        session,
                        Status.ERROR,
                        source=Source.CHECKOUT,
                        detail=reason,
                        last_error=reason,
                        session_id=session_id,
                    )
                return
            except IntegrityError:
                pass  # another row already names that session (the failure itself): give up without it
        transition(session, Status.ERROR, source=Source.CHECKOUT, detail=reason, last_error=reason)
    except Exception:
        logger.exception("Could not mark payment session %s as failed", session.reference)


def cancel_session(session: PaymentSession, *, request: HttpRequest | None = None) -> bool:
    """The buyer came back through cancel_url. Khaime still accepts payment until expires_at,
    so a later ``completed`` is still applied.

    With ``request`` (the cancel page), only the buyer who started the checkout (same user, or
    same browser) changes the status; anyone else holding the link changes nothing."""
    if request is not None and not buyers.started_by(session, request):
        return False
    return transition(
        session, Status.CANCELLED, source=Source.CANCEL, detail="buyer cancelled", cancelled_at=timezone.now()
    )


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


def in_flight_limit() -> float:
    """Seconds after which a row still in ``created`` cannot belong to a live request any more:
    the longest the create call can take with the settings (its request died: a killed worker, a
    dropped database connection)."""
    return longest_call(
        tuple(khaime_settings.TIMEOUT), int(khaime_settings.MAX_RETRIES), float(khaime_settings.BACKOFF_MAX)
    )


def _insert_or_reuse(purchase_key: str, client: KhaimeClient, **values: Any) -> PaymentSession:
    """INSERT the session, or hand back the open one for the same purchase.

    The partial unique index on ``purchase_key`` decides which of two racing requests inserts;
    the other one waits for that session to leave ``created`` and reuses it. It waits at most
    IN_FLIGHT_WAIT seconds (well under a WSGI worker's timeout), then raises
    ``KhaimeCheckoutInProgressError``; a row older than anything ``client`` can take is abandoned
    (moved to ``error``) at once, never waited on.
    """
    abandoned_before = timedelta(seconds=client.longest_call())
    wait = float(khaime_settings.IN_FLIGHT_WAIT)
    deadline = time.monotonic() + wait
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
        if existing.status in AWAITING_STATUSES:
            if existing.payment_url and not existing.is_expired_locally:
                logger.info("Reusing %s payment session %s for the same purchase", existing.status, existing.reference)
                return existing
            transition(existing, Status.EXPIRED, source=Source.CHECKOUT, detail="expires_at passed; not reused")
            continue
        # `created`: another request is talking to Khaime for this purchase right now, unless it
        # died (then its row is older than any call to Khaime can take).
        if existing.created_at < timezone.now() - abandoned_before:
            transition(
                existing, Status.ERROR, source=Source.CHECKOUT, detail=ABANDONED_DETAIL, last_error=ABANDONED_ERROR
            )
            continue
        if time.monotonic() >= deadline:
            raise KhaimeCheckoutInProgressError(
                "The payment for this purchase is still being created; please try again in a moment.",
                retry_after=max(1, math.ceil(wait)),
            )
        time.sleep(_WAIT_STEP)


def _purchase_key(user, browser: str, khaime_request: SessionRequest, mode: str) -> str:
    """The hash one open session per purchase is keyed by: the buyer, the mode of the API key
    (after switching from a sandbox to a live key, a sandbox session is never reused) and the price.

    The buyer is the logged-in user, or the guest's browser with the email it typed: never the
    email alone, or a stranger typing someone's email would get their session. A guest with no
    browser token (no Django session) gets a key of their own: no reuse.
    """
    if user is not None:
        buyer = f"user:{user.pk}"
    elif browser:
        buyer = f"browser:{browser}:{khaime_request.customer['email']}"
    else:
        buyer = f"once:{khaime_request.metadata['reference']}"
    price = {
        key: getattr(khaime_request, key)
        for key in ("amount", "currency", "product_id", "product_name", "subscription_frequency_key")
    }
    price["metadata"] = {k: v for k, v in khaime_request.metadata.items() if k not in RESERVED_METADATA_KEYS}
    blob = json.dumps([buyer, mode, price], sort_keys=True, separators=(",", ":"), default=str)
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
    raise KhaimeUnsafeRedirectError(
        "Khaime's payment_url is not an https URL; the buyer was not sent there.", details={"payment_url": url[:200]}
    )
