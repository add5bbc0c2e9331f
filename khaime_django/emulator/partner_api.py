"""Khaime's Partner API under ``/api/v1/partner``: the endpoints a merchant's code calls.

Every request here first goes through the simulated faults (latency, rate limit, random
failure), then the API key check, then routing, in the order a real gateway would apply them.
"""

from __future__ import annotations

import time

from .routing import Request, Response, Router, failure, success
from .sessions import InvalidSessionRequest, parse_session_request

PREFIX = "/api/v1/partner"
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


_router = Router(
    PREFIX,
    [
        ("POST", r"/payments/sessions", create_session),
        ("GET", r"/payments/sessions/(?P<session_id>[^/]+)", retrieve_session),
        ("GET", r"/account", account),
    ],
)
