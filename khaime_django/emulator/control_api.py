"""The emulator's own control API under ``/_emulator`` (not part of Khaime's API).

It lets a demo, a soak run or a test in another process inspect the emulator's truth, play the
buyer or Khaime, inject faults, change the configuration and reset. No Partner API faults apply.

It is a local tool and guards against being driven by anything else: only requests whose Host
is a loopback name are served (a web page on another origin cannot rebind to it), and every POST
must be ``application/json`` (which a cross-site form cannot send without a preflight). The
webhook secret is never returned, the webhook URL stays on loopback unless the emulator was
started with ``allow_remote_webhooks``, and what a webhook target answered is not shown.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ..defaults import LOOPBACK_HOSTS
from .actions import SESSION_ACTIONS, SUBSCRIPTION_ACTIONS, pattern
from .config import STARTUP_ONLY_OPTIONS, InvalidConfig
from .core import NoWebhookUrl
from .refund_actions import REFUND_FAULTS, RefundRefused
from .routing import Request, Response, Router, failure, success
from .sessions import TransitionNotAllowed
from .state import EmulatorState  # defines the session actions the routes below are built from

PREFIX = "/_emulator"


def handle(emulator: EmulatorState, request: Request) -> Response:
    if not is_loopback_host(request.headers.get("Host")):
        return failure(403, "The control API answers only requests addressed to a loopback host")
    if request.method == "POST":
        content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return failure(415, "Control API POSTs must be sent as application/json")
    try:
        return _router.dispatch(emulator, request)
    except TransitionNotAllowed as exc:
        return failure(409, str(exc), {"status": exc.status})
    except RefundRefused as exc:
        return failure(exc.status, str(exc), exc.details)


def is_loopback_host(host: str | None) -> bool:
    """Whether a Host header names this machine (``127.0.0.1:8765``, ``localhost``, ``[::1]:80``)."""
    if not host:
        return False
    try:
        hostname = urlsplit(f"//{host}").hostname
    except ValueError:
        return False
    return hostname in LOOPBACK_HOSTS


def _optional_body(request: Request) -> dict:
    return request.json_object() if request.body else {}


# --- reading ---


def list_sessions(emulator: EmulatorState, request: Request) -> Response:
    return success(emulator.sessions())


def get_session(emulator: EmulatorState, request: Request, session_id: str) -> Response:
    return success(emulator.session(session_id))


def list_payments(emulator: EmulatorState, request: Request) -> Response:
    return success(emulator.payments())


def list_subscriptions(emulator: EmulatorState, request: Request) -> Response:
    return success(emulator.subscriptions())


def get_subscription(emulator: EmulatorState, request: Request, subscription_id: str) -> Response:
    return success(emulator.subscription(subscription_id))


def list_refunds(emulator: EmulatorState, request: Request) -> Response:
    return success(emulator.refunds())


def get_refund(emulator: EmulatorState, request: Request, refund_id: str) -> Response:
    return success(emulator.refund_record(refund_id))


def list_deliveries(emulator: EmulatorState, request: Request) -> Response:
    return success(emulator.deliveries())


def list_events(emulator: EmulatorState, request: Request) -> Response:
    return success(emulator.events())


def truth(emulator: EmulatorState, request: Request) -> Response:
    return success(emulator.truth())


def get_config(emulator: EmulatorState, request: Request) -> Response:
    return success(emulator.config.public_dict())


# --- acting ---


def act_on_session(emulator: EmulatorState, request: Request, session_id: str, action: str) -> Response:
    return success(SESSION_ACTIONS[action](emulator, session_id))


def act_on_subscription(emulator: EmulatorState, request: Request, subscription_id: str, action: str) -> Response:
    return success(SUBSCRIPTION_ACTIONS[action](emulator, subscription_id))


def redeliver(emulator: EmulatorState, request: Request, event_id: str) -> Response:
    try:
        return success(emulator.redeliver(event_id))
    except NoWebhookUrl as exc:
        return failure(409, str(exc))


def dashboard_refund(emulator: EmulatorState, request: Request, transaction_id: str) -> Response:
    body = _optional_body(request)
    return success(emulator.dashboard_refund(transaction_id, body.get("amount"), body.get("reason")))


def next_refund(emulator: EmulatorState, request: Request) -> Response:
    fault = request.json_object().get("fault")
    if fault is not None and fault not in REFUND_FAULTS:
        return failure(422, "Validation failed", {"fault": f"must be one of {', '.join(REFUND_FAULTS)} or null"})
    emulator.next_refund(fault)
    return success({"fault": fault})


def settle_refund(emulator: EmulatorState, request: Request, refund_id: str, outcome: str) -> Response:
    settle = emulator.complete_refund if outcome == "complete" else emulator.fail_refund
    return success(settle(refund_id))


def set_config(emulator: EmulatorState, request: Request) -> Response:
    options = request.json_object()
    locked = sorted(set(options) & STARTUP_ONLY_OPTIONS)
    if locked:
        return failure(422, "Invalid configuration", {name: "can only be set at start-up" for name in locked})
    try:
        emulator.configure(**options)
    except InvalidConfig as exc:
        return failure(422, "Invalid configuration", exc.details)
    return success(emulator.config.public_dict())


def reset(emulator: EmulatorState, request: Request) -> Response:
    _optional_body(request)
    emulator.reset()
    return success(emulator.config.public_dict())


_ID = r"[^/]+"

_router = Router(
    PREFIX,
    [
        ("GET", r"/sessions", list_sessions),
        ("GET", rf"/sessions/(?P<session_id>{_ID})", get_session),
        ("POST", rf"/sessions/(?P<session_id>{_ID})/(?P<action>{pattern(SESSION_ACTIONS)})", act_on_session),
        ("GET", r"/payments", list_payments),
        ("POST", rf"/payments/(?P<transaction_id>{_ID})/refund", dashboard_refund),
        ("GET", r"/subscriptions", list_subscriptions),
        ("GET", rf"/subscriptions/(?P<subscription_id>{_ID})", get_subscription),
        (
            "POST",
            rf"/subscriptions/(?P<subscription_id>{_ID})/(?P<action>{pattern(SUBSCRIPTION_ACTIONS)})",
            act_on_subscription,
        ),
        ("GET", r"/refunds", list_refunds),
        ("POST", r"/refunds/next", next_refund),
        ("GET", rf"/refunds/(?P<refund_id>{_ID})", get_refund),
        ("POST", rf"/refunds/(?P<refund_id>{_ID})/(?P<outcome>complete|fail)", settle_refund),
        ("GET", r"/events", list_events),
        ("POST", rf"/events/(?P<event_id>{_ID})/redeliver", redeliver),
        ("GET", r"/deliveries", list_deliveries),
        ("GET", r"/truth", truth),
        ("GET", r"/config", get_config),
        ("POST", r"/config", set_config),
        ("POST", r"/reset", reset),
    ],
)
