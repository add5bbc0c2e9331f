"""The checkout session endpoints of :class:`~khaime_django.client.KhaimeClient`:
``POST /payments/sessions`` and ``GET /payments/sessions/{session_id}``."""

from __future__ import annotations

from urllib.parse import quote

from ..exceptions import KhaimeRequestInvalidError
from ..session_request import SessionRequest
from .responses import CREATE_SESSION_FIELDS, GET_SESSION_FIELDS, check_created_session, require_fields
from .transport import Transport


class SessionEndpoints(Transport):
    def create_session(self, request: SessionRequest) -> dict:
        """``POST /payments/sessions``; returns Khaime's ``data`` (session_id, payment_url, ...)."""
        data = self._request("POST", "/payments/sessions", json=request.to_body())
        require_fields(data, CREATE_SESSION_FIELDS)
        check_created_session(data, request)
        return data

    def get_session(
        self, session_id: str, *, timeout: tuple[float, float] | None = None, deadline: float | None = None
    ) -> dict:
        """``GET /payments/sessions/{session_id}``; returns Khaime's ``data`` (status, ...).

        ``deadline`` (seconds) bounds the whole call, retries, waits and the body included: a
        buyer-facing page passes it so a slow Khaime cannot hold the buyer longer."""
        if not session_id:
            raise KhaimeRequestInvalidError("A session id is required.", details={"session_id": "required"})
        data = self._request(
            "GET", f"/payments/sessions/{quote(session_id, safe='')}", timeout=timeout, deadline=deadline
        )
        require_fields(data, GET_SESSION_FIELDS)
        return data
