"""The emulator's own control API under ``/_emulator`` (not part of Khaime's API).

It lets a demo or a test in another process inspect state, play the buyer or Khaime
(complete, fail, expire, refund, dispute), change the configuration and reset.
No faults apply here.
"""

from __future__ import annotations

from .config import InvalidConfig
from .routing import Request, Response, Router, failure, success
from .sessions import TransitionNotAllowed

PREFIX = "/_emulator"
ACTIONS = ("complete", "fail", "expire", "refund", "dispute")


def handle(emulator, request: Request) -> Response:
    return _router.dispatch(emulator, request)


def list_sessions(emulator, request: Request) -> Response:
    return success(emulator.sessions())


def get_session(emulator, request: Request, session_id: str) -> Response:
    return success(emulator.session(session_id))


def act_on_session(emulator, request: Request, session_id: str, action: str) -> Response:
    try:
        return success(getattr(emulator, action)(session_id))
    except TransitionNotAllowed as exc:
        return failure(409, str(exc), {"status": exc.status})


def list_deliveries(emulator, request: Request) -> Response:
    return success(emulator.deliveries())


def list_events(emulator, request: Request) -> Response:
    return success(emulator.events())


def get_config(emulator, request: Request) -> Response:
    return success(emulator.config.as_dict())


def set_config(emulator, request: Request) -> Response:
    try:
        emulator.configure(**request.json_object())
    except InvalidConfig as exc:
        return failure(422, "Invalid configuration", exc.details)
    return success(emulator.config.as_dict())


def reset(emulator, request: Request) -> Response:
    emulator.reset()
    return success(emulator.config.as_dict())


_router = Router(
    PREFIX,
    [
        ("GET", r"/sessions", list_sessions),
        ("GET", r"/sessions/(?P<session_id>[^/]+)", get_session),
        (
            "POST",
            rf"/sessions/(?P<session_id>[^/]+)/(?P<action>{'|'.join(ACTIONS)})",
            act_on_session,
        ),
        ("GET", r"/deliveries", list_deliveries),
        ("GET", r"/events", list_events),
        ("GET", r"/config", get_config),
        ("POST", r"/config", set_config),
        ("POST", r"/reset", reset),
    ],
)
