"""The small HTTP vocabulary the route modules share: requests, responses, envelopes, a router."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http import HTTPStatus

from .sessions import UnknownRecord


@dataclass
class Request:
    method: str
    path: str
    headers: Message  # http.server's headers: case-insensitive .get()
    body: bytes
    mode: str | None = None  # "sandbox" / "live", set once the API key was accepted
    query: dict[str, str] = field(default_factory=dict)  # the last value of each parameter

    def json_object(self) -> dict:
        """The body as a JSON object, or ``BadRequest``."""
        try:
            value = json.loads(self.body.decode("utf-8")) if self.body else None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadRequest(f"Request body is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise BadRequest("Request body must be a JSON object")
        return value


class BadRequest(ValueError):
    """Answered with 400 and the error envelope."""


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict = field(default_factory=dict)
    delay: float = 0.0  # seconds to hold the answer back (a simulated slow answer)
    drop: bool = False  # hang up without answering (a simulated dropped connection)


def success(data, status: int = 200) -> Response:
    return _json(status, {"success": True, "data": data})


def failure(status: int, message: str | None = None, details: dict | None = None) -> Response:
    payload = {"success": False, "error": message or HTTPStatus(status).phrase}
    if details is not None:
        payload["details"] = details
    return _json(status, payload)


def html(status: int, page: str) -> Response:
    return Response(status, page.encode("utf-8"), "text/html; charset=utf-8")


def redirect(location: str) -> Response:
    """303 See Other: the browser follows a POSTed form's answer with a GET."""
    return Response(303, b"", "text/plain; charset=utf-8", {"Location": location})


def _json(status: int, payload: dict) -> Response:
    return Response(status, json.dumps(payload).encode("utf-8"))


Handler = Callable[..., Response]


def json_not_found(message: str) -> Response:
    return failure(404, message)


def json_not_allowed(allowed: list[str]) -> Response:
    return failure(405, "Method not allowed", {"allowed": allowed})


class Router:
    """Routes requests under ``prefix`` to handlers ``(emulator, request, **path_params)``.

    Answers for an unknown path, a wrong method, a body that is not a JSON object and an
    unknown session are the same for every route, in the area's own format (JSON or HTML).
    """

    def __init__(
        self,
        prefix: str,
        routes: list[tuple[str, str, Handler]],
        not_found: Callable[[str], Response] = json_not_found,
        not_allowed: Callable[[list[str]], Response] = json_not_allowed,
    ):
        self.prefix = prefix
        self._routes = [(method, re.compile(pattern + r"\Z"), handler) for method, pattern, handler in routes]
        self._not_found = not_found
        self._not_allowed = not_allowed

    def dispatch(self, emulator, request: Request) -> Response:
        path = request.path[len(self.prefix) :]
        handler, params, allowed = self.resolve(request.method, path)
        if handler is None and allowed:
            response = self._not_allowed(allowed)
            response.headers["Allow"] = ", ".join(allowed)
            return response
        if handler is None:
            return self._not_found("Not found")
        try:
            return handler(emulator, request, **params)
        except BadRequest as exc:
            return failure(400, str(exc))
        except UnknownRecord as exc:
            return self._not_found(f"{exc.kind.capitalize()} not found")

    def resolve(self, method: str, path: str) -> tuple[Handler | None, dict, list[str]]:
        """``(handler, path parameters, [])`` on a match, else ``(None, {}, methods allowed)``."""
        allowed = []
        for route_method, pattern, handler in self._routes:
            match = pattern.match(path)
            if match:
                if route_method == method:
                    return handler, match.groupdict(), []
                allowed.append(route_method)
        return None, {}, allowed
