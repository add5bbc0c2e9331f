"""The refund endpoint of :class:`~khaime_django.client.KhaimeClient`: ``POST /refunds``."""

from __future__ import annotations

from ..exceptions import KhaimeRequestInvalidError
from .responses import CREATE_REFUND_FIELDS, require_fields
from .transport import Transport


class RefundEndpoints(Transport):
    def create_refund(self, transaction_id: str, *, amount: int | None = None, reason: str = "") -> dict:
        """``POST /refunds``; returns Khaime's ``data`` (``refund_id``, ``status``, ``amount``,
        ``currency``). ``amount`` in minor units (omitted: all that remains). Like every POST it is
        retried only where Khaime cannot have acted (no connection made, or 429): a timeout or a
        5xx after sending raises, and the caller must treat the refund as possibly made."""
        if not transaction_id:
            raise KhaimeRequestInvalidError("A transaction id is required.", details={"transaction_id": "required"})
        body: dict = {"transaction_id": transaction_id}
        if amount is not None:
            if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
                raise KhaimeRequestInvalidError(
                    "A refund amount is a positive integer in minor units.", details={"amount": "invalid"}
                )
            body["amount"] = amount
        if reason:
            body["reason"] = reason
        data = self._request("POST", "/refunds", json=body)
        require_fields(data, CREATE_REFUND_FIELDS)
        return data
