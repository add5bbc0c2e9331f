"""The rule for the success and cancel URLs Khaime sends a buyer back to.

A live session (``pk_live_`` key) must return the buyer over https to a public host. Behind a
proxy that terminates TLS without ``SECURE_PROXY_SSL_HEADER``, or one that rewrites ``Host``
without ``USE_X_FORWARDED_HOST``, Django builds ``http://`` or ``127.0.0.1`` URLs from the
request: a buyer who paid would land on a dead or insecure page. Such a session is refused
before it is stored or sent to Khaime, with an error logged that says what to configure.
Sandbox sessions are not checked (local development returns to ``http://127.0.0.1:8000``).
"""

from __future__ import annotations

import ipaddress
import logging
from urllib.parse import urlsplit

from .exceptions import KhaimeConfigurationError

logger = logging.getLogger(__name__)

FIX = (
    "Set KHAIME['SITE_URL'] to your public https origin (https://shop.example), or, behind a proxy, "
    "SECURE_PROXY_SSL_HEADER (and USE_X_FORWARDED_HOST if the proxy rewrites Host)."
)


class UnsafeReturnURL(KhaimeConfigurationError):
    """A live session's success or cancel URL is not https or points at this machine."""


def is_loopback_host(host: str | None) -> bool:
    """``localhost``, ``*.localhost``, 127.0.0.0/8, ``::1`` and the unspecified addresses."""
    if not host:
        return True
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def return_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a live session's return URL, or ``None`` when it can."""
    parts = urlsplit(url)
    if parts.scheme != "https":
        return f"{url} is not https"
    if is_loopback_host(parts.hostname):
        return f"{url} points at this machine ({parts.hostname or 'no host'})"
    return None


def require_safe_return_urls(mode: str, *urls: str) -> None:
    """Raise :class:`UnsafeReturnURL` (and log it at ERROR) when ``mode`` is ``"live"`` and any of
    ``urls`` is not https or points at loopback. Sandbox sessions pass unchecked."""
    if mode != "live":
        return
    problems = [problem for problem in map(return_url_problem, urls) if problem]
    if problems:
        message = f"Refused to create a live Khaime session: {'; '.join(problems)}. {FIX}"
        logger.error(message)
        raise UnsafeReturnURL(message)
