"""``KhaimeClient``: the only code that speaks HTTP to Khaime, in parts that each read alone:

- transport.py: the pooled ``requests.Session``, timeouts, the bounded retry loop, ``Retry-After``,
  the deadline of a whole call, and the API key kept out of every error;
- sessions.py, subscriptions.py, refunds.py: the endpoints of each Khaime resource, as small
  classes on the transport that :class:`KhaimeClient` composes;
- responses.py: Khaime's answer turned into its ``data`` or a typed ``KhaimeError``, and checked
  before it is trusted.

Requests arrive validated (a ``SessionRequest`` cannot be invalid). The names other code uses
(``KhaimeClient``, ``get_client``, ``longest_call`` and the constants) are importable from here,
as they were when the client was one module.
"""

from __future__ import annotations

import threading

from ..conf import khaime_settings
from .refunds import RefundEndpoints
from .responses import CREATE_REFUND_FIELDS, CREATE_SESSION_FIELDS, GET_SESSION_FIELDS
from .sessions import SessionEndpoints
from .subscriptions import SubscriptionEndpoints
from .transport import MAX_RETRY_AFTER, MIN_RATE_LIMIT_DELAY, longest_call

__all__ = [
    "CREATE_REFUND_FIELDS",
    "CREATE_SESSION_FIELDS",
    "GET_SESSION_FIELDS",
    "MAX_RETRY_AFTER",
    "MIN_RATE_LIMIT_DELAY",
    "KhaimeClient",
    "clear_holds",
    "get_client",
    "longest_call",
]


class KhaimeClient(SessionEndpoints, SubscriptionEndpoints, RefundEndpoints):
    """Khaime's Partner API: checkout sessions, subscriptions and refunds over one pooled
    transport (see transport.py for its timeouts and retries)."""

    def __repr__(self) -> str:
        return f"<KhaimeClient {self.base_url}>"


_clients: dict[tuple, KhaimeClient] = {}
_clients_lock = threading.Lock()


def get_client(*, max_retries: int | None = None) -> KhaimeClient:
    """The shared client for the current settings (one connection pool per configuration).
    ``max_retries`` overrides ``KHAIME["MAX_RETRIES"]`` (khaime_sync asks with 0)."""
    config = (
        khaime_settings.API_KEY,
        khaime_settings.API_BASE_URL,
        tuple(khaime_settings.TIMEOUT),
        int(khaime_settings.MAX_RETRIES) if max_retries is None else max_retries,
        khaime_settings.BACKOFF_BASE,
        khaime_settings.BACKOFF_MAX,
    )
    client = _clients.get(config)
    if client is None:
        with _clients_lock:
            client = _clients.get(config)
            if client is None:
                api_key, base_url, timeout, max_retries, backoff_base, backoff_max = config
                client = KhaimeClient(
                    api_key,
                    base_url,
                    timeout=timeout,
                    max_retries=max_retries,
                    backoff_base=backoff_base,
                    backoff_max=backoff_max,
                )
                _clients[config] = client
    return client


def clear_holds() -> None:
    """Forget the 429 hold of every shared client (see transport.py): for test suites, where one
    test's 429 must not hold the next test's calls."""
    for client in list(_clients.values()):
        client.clear_hold()
