"""The Khaime webhook endpoint (``khaime:webhook``): verify -> record -> apply -> answer.

Every outcome's status code is decided here, in one place, because Khaime retries on anything
but 2xx (3 attempts, 2 s apart) and a wrong code either loses an event or replays it for ever.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from . import services, tasks, webhooks
from .conf import khaime_settings
from .exceptions import WebhookError, WebhookPayloadError, WebhookSignatureError
from .models import WebhookOutcome

logger = logging.getLogger(__name__)

#: This delivery's outcome -> the HTTP status Khaime gets.
STATUS_FOR_OUTCOME: dict[str, int] = {
    WebhookOutcome.RECEIVED: 202,  # task mode: stored, applied in the background (or by khaime_sync)
    WebhookOutcome.APPLIED: 200,
    WebhookOutcome.DUPLICATE: 200,  # already processed: anything but 2xx makes Khaime send it again
    WebhookOutcome.IGNORED: 200,  # Khaime adds event types without notice; refusing them helps nobody
    WebhookOutcome.UNMATCHED: 200,  # a retry will not make the session appear; the admin can apply it later
    WebhookOutcome.ERROR: 500,  # our own failure: Khaime retries, and the retry applies it again
}


class WebhookBodyTooLargeError(WebhookError):
    """The body is over KHAIME["WEBHOOK_MAX_BODY"] bytes."""


#: The name before 0.2.
WebhookBodyTooLarge = WebhookBodyTooLargeError


# Outside the merchant's ATOMIC_REQUESTS transaction: the commit in post() is then the real one,
# so the answer Khaime gets describes what is committed, receivers (on commit) have run, and the
# event's row lock, which holds back concurrent deliveries, is released as soon as the apply ends.
@method_decorator([csrf_exempt, transaction.non_atomic_requests], name="dispatch")
class WebhookView(View):
    """``POST`` from Khaime, signed with ``X-Khaime-Signature``; see the README, "Webhooks"."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest) -> HttpResponse:
        try:
            event = self.verify(request)
        except WebhookBodyTooLargeError:
            return HttpResponse("Request body too large.", status=413, content_type="text/plain")
        except WebhookSignatureError:
            # Django would answer a SuspiciousOperation with 400; Khaime's docs ask for 401.
            return HttpResponse("Invalid signature.", status=401, content_type="text/plain")
        except WebhookPayloadError as error:
            return HttpResponse(f"Invalid event: {error}.", status=400, content_type="text/plain")
        if khaime_settings.WEBHOOK_PROCESSING == "task":
            # Record, enqueue the apply on commit, answer: a slow signal receiver cannot make
            # Khaime time out. An enqueue that fails is logged; the stored event waits for
            # khaime_sync (tasks.enqueue_apply).
            return self.answer(tasks.receive_webhook_event(event))
        # One transaction, one commit per delivery: the inbox row, the status change and the
        # outcome commit together. A failing apply is rolled back to a savepoint inside it, so
        # its error still commits with the row (services.inbox.apply_webhook_event).
        return self.answer(services.handle_webhook_event(event))

    def verify(self, request: HttpRequest) -> webhooks.KhaimeEvent:
        """The event, once the body is within the limit and signed with one of our secrets."""
        body = read_body(request, limit=int(khaime_settings.WEBHOOK_MAX_BODY))
        try:
            webhooks.verify_signature(
                body,
                request.META.get(webhooks.SIGNATURE_HEADER),
                khaime_settings.WEBHOOK_SECRETS,
            )
        except WebhookSignatureError as error:
            # Which check failed, never the secret nor the signature; the event id helps match
            # this line with Khaime's delivery log.
            logger.warning(
                "Refused Khaime webhook %s (%d bytes): %s",
                request.META.get(webhooks.EVENT_ID_HEADER, "without X-Khaime-Event-Id"),
                len(body),
                error,
            )
            raise
        try:
            return webhooks.parse_event(
                body,
                api_version_header=request.META.get(webhooks.API_VERSION_HEADER, ""),
            )
        except WebhookPayloadError as error:
            logger.warning("Refused a signed Khaime webhook: %s", error)
            raise

    def answer(self, outcome: str) -> HttpResponse:
        return JsonResponse({"received": True, "outcome": outcome}, status=STATUS_FOR_OUTCOME[outcome])


def read_body(request: HttpRequest, *, limit: int) -> bytes:
    """At most ``limit`` bytes of body, else :class:`WebhookBodyTooLargeError`.

    A declared Content-Length over the limit is refused before anything is read. A missing or
    lying one is not trusted either: we read one byte past the limit, never more, and refuse if
    that byte exists (behind ASGI or a chunked upload the length may be absent or wrong).
    """
    declared = request.META.get("CONTENT_LENGTH") or ""
    if declared.strip().isdigit() and int(declared) > limit:
        raise WebhookBodyTooLargeError(f"Content-Length {declared} is over {limit} bytes")
    body = request.read(limit + 1)
    if len(body) > limit:
        raise WebhookBodyTooLargeError(f"the body is over {limit} bytes")
    return body
