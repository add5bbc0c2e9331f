"""Khaime's Partner API under ``/api/v1/partner``: the endpoints a merchant's code calls.

Every request here first goes through the simulated faults (latency, rate limit, random
failure), then the API key check, then routing, in the order a real gateway would apply them.
"""

from __future__ import annotations

import time

from ..defaults import PARTNER_API_PATH
from .refund_actions import RefundRefused
from .routing import BadRequest, Request, Response, Router, failure, success
from .sessions import InvalidSessionRequest, parse_session_request
from .subscription_actions import InvalidListQuery

PREFIX = PARTNER_API_PATH
MERCHANT_ID = 1042
KEY_MODES = {"pk_sandbox_": "sandbox", "pk_live_": "live"}


def handle(emulator, request: Request) -> Response:
    fault = emulator.draw_fault()
    if fault.latency_ms:
        time.sleep(fault.latency_ms / 1000)
    if fault.status is not None:
        return failure(fault.status, fault.message)

    request.mode = mode_for_key(request.headers.get("X-API-Key") or "")
    if request.mode is None:
        return failure(401, "Invalid or missing API key")

    return _router.dispatch(emulator, request)


def mode_for_key(api_key: str) -> str | None:
    for prefix, mode in KEY_MODES.items():
        if api_key.startswith(prefix):
            return mode
    return None


def create_session(emulator, request: Request) -> Response:
    try:
        session_request = parse_session_request(request.json_object())
    except InvalidSessionRequest as exc:
        return failure(422, "Validation failed", exc.details)
    return success(emulator.create_session(session_request, request.mode), status=201)


def retrieve_session(emulator, request: Request, session_id: str) -> Response:
    return success(emulator.retrieve_session(session_id))


def account(emulator, request: Request) -> Response:
    return success({"merchant_id": MERCHANT_ID, "baseline_currency": "USD"})


def list_subscriptions(emulator, request: Request) -> Response:
    query = request.query
    try:
        page = emulator.list_subscriptions(
            mode=request.mode,
            status=query.get("status") or None,
            product_id=_int_param(query, "product_id", None),
            limit=_int_param(query, "limit", 10),
            offset=_int_param(query, "offset", 0),
            sort_by=query.get("sort_by") or "created_at",
            sort_order=query.get("sort_order") or "desc",
        )
    except InvalidListQuery as exc:
        return failure(422, "Validation failed", exc.details)
    return success(page)


def retrieve_subscription(emulator, request: Request, subscription_id: str) -> Response:
    return success(emulator.subscription(subscription_id, mode=request.mode))


def create_refund(emulator, request: Request) -> Response:
    try:
        data, answer_fault = emulator.create_refund(request.json_object(), request.mode)
    except RefundRefused as exc:
        return failure(exc.status, str(exc), exc.details)
    response = success(data)
    if answer_fault == "timeout":
        response.delay = emulator.config.refund_answer_delay
    elif answer_fault == "drop":
        response.drop = True
    return response


def _int_param(query: dict[str, str], name: str, default: int | None) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer") from None


_router = Router(
    PREFIX,
    [
        ("POST", r"/payments/sessions", create_session),
        ("GET", r"/payments/sessions/(?P<session_id>[^/]+)", retrieve_session),
        ("GET", r"/account", account),
        ("GET", r"/subscriptions", list_subscriptions),
        ("GET", r"/subscriptions/(?P<subscription_id>[^/]+)", retrieve_subscription),
        ("POST", r"/refunds", create_refund),
    ],
)
