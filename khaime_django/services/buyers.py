"""Which browser started a checkout.

A guest's open session is reused, and its cancel return recorded, only for the browser that
started it, never for whoever types the same email. The browser is known by a random token kept
in its Django session (``SESSION_KEY``); a payment session stores only a hash of it
(``PaymentSession.buyer_key``). A logged-in buyer is known by their user, in every browser.

Without ``django.contrib.sessions`` (no ``request.session``), or without a request at all, a
guest's checkout is never reused and its cancel return is shown but not recorded.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.http import HttpRequest

from ..models import PaymentSession

#: Where the browser's token lives in ``request.session``.
SESSION_KEY = "_khaime_buyer"


def browser_token(request: HttpRequest | None, *, create: bool = False) -> str | None:
    """The token of the browser behind ``request``, made and stored in its Django session when
    ``create`` is true and it has none yet; ``None`` when the request has no session."""
    session = getattr(request, "session", None)
    if session is None:
        return None
    token = session.get(SESSION_KEY)
    if isinstance(token, str) and token:
        return token
    if not create:
        return None
    token = secrets.token_urlsafe(32)
    session[SESSION_KEY] = token
    return token


def buyer_key(token: str | None) -> str:
    """What a payment session stores of the token: its SHA-256, or ``""`` without one."""
    return hashlib.sha256(token.encode()).hexdigest() if token else ""


def authenticated_user(request: HttpRequest | None):
    user = getattr(request, "user", None)
    return user if user is not None and user.is_authenticated else None


def started_by(session: PaymentSession, request: HttpRequest) -> bool:
    """Whether ``request`` comes from the buyer who started ``session``: its logged-in user, or
    the browser whose token it stored."""
    user = authenticated_user(request)
    if user is not None and session.user_id is not None and user.pk == session.user_id:
        return True
    token = browser_token(request)
    return bool(token and session.buyer_key and hmac.compare_digest(session.buyer_key, buyer_key(token)))
