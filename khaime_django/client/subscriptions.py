"""The subscription endpoints of :class:`~khaime_django.client.KhaimeClient`:
``GET /subscriptions`` (one page) and ``GET /subscriptions/{id}``."""

from __future__ import annotations

from urllib.parse import quote, urlencode

from ..exceptions import KhaimeRequestInvalidError, KhaimeResponseError
from .responses import require_fields
from .transport import Transport


class SubscriptionEndpoints(Transport):
    def list_subscriptions(
        self,
        *,
        limit: int = 100,
        offset: int = 0,
        status: str | None = None,
        sort_by: str = "created_at",
        sort_order: str = "asc",
    ) -> dict:
        """``GET /subscriptions``: one page, ``{subscriptions: [...], total, limit, offset}``.
        Oldest first by default, so new subscriptions join the end and offsets stay put."""
        query = {"limit": limit, "offset": offset, "sort_by": sort_by, "sort_order": sort_order}
        if status:
            query["status"] = status
        data = self._request("GET", f"/subscriptions?{urlencode(query)}")
        if not isinstance(data.get("subscriptions"), list):
            raise KhaimeResponseError("Khaime's answer lacks subscriptions.", details={"subscriptions": "missing"})
        return data

    def get_subscription(self, subscription_id: str) -> dict:
        """``GET /subscriptions/{id}``: the subscription object with ``payment_history``."""
        if not subscription_id:
            raise KhaimeRequestInvalidError("A subscription id is required.", details={"subscription_id": "required"})
        data = self._request("GET", f"/subscriptions/{quote(subscription_id, safe='')}")
        require_fields(data, ("id", "status"))
        return data
