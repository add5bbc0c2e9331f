"""The hosted checkout the buyer sees at ``payment_url``: its routes and its HTML pages.

Pay, Decline and Cancel are POST forms; each answers 303 so the browser lands on a page it can
reload. Pay and Decline on a session that is no longer pending answer 409 and send no webhook.
Cancel changes nothing: Khaime has no cancelled status, the buyer may come back and pay until
``expires_at``.
"""

from __future__ import annotations

from html import escape

from .money import format_minor
from .routing import Request, Response, Router, html, redirect
from .sessions import TransitionNotAllowed

PREFIX = "/checkout"


def handle(emulator, request: Request) -> Response:
    return _router.dispatch(emulator, request)


def show(emulator, request: Request, session_id: str) -> Response:
    return html(200, checkout_page(emulator.session(session_id)))


def pay(emulator, request: Request, session_id: str) -> Response:
    try:
        snapshot = emulator.complete(session_id)
    except TransitionNotAllowed as exc:
        return html(409, conflict_page(emulator.session(session_id), str(exc)))
    return redirect(snapshot["success_url"] or snapshot["payment_url"])


def decline(emulator, request: Request, session_id: str) -> Response:
    try:
        snapshot = emulator.fail(session_id)
    except TransitionNotAllowed as exc:
        return html(409, conflict_page(emulator.session(session_id), str(exc)))
    return redirect(snapshot["payment_url"])


def cancel(emulator, request: Request, session_id: str) -> Response:
    snapshot = emulator.session(session_id)
    return redirect(snapshot["cancel_url"] or snapshot["payment_url"])


_router = Router(
    PREFIX,
    [
        ("GET", r"/(?P<session_id>[^/]+)", show),
        ("POST", r"/(?P<session_id>[^/]+)/pay", pay),
        ("POST", r"/(?P<session_id>[^/]+)/decline", decline),
        ("POST", r"/(?P<session_id>[^/]+)/cancel", cancel),
    ],
    not_found=lambda message: html(404, not_found_page()),
    not_allowed=lambda allowed: html(405, _page("Method not allowed", "Method not allowed", "")),
)

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;background:#f4f5f7;color:#1f2933;
margin:0;display:flex;justify-content:center;padding:3rem 1rem}
main{background:#fff;border-radius:12px;box-shadow:0 2px 12px rgba(0,0,0,.08);padding:2rem;
width:100%;max-width:26rem}
h1{font-size:1.25rem;margin:.75rem 0 1.25rem}
.badge{display:inline-block;background:#fff4d6;color:#8a5a00;border:1px solid #f0d28a;
border-radius:999px;font-size:.75rem;font-weight:600;padding:.15rem .6rem}
table{width:100%;border-collapse:collapse;margin-bottom:1.5rem}
td{padding:.35rem 0}td:last-child{text-align:right;font-variant-numeric:tabular-nums}
tr.total td{border-top:1px solid #e4e7eb;font-weight:700;padding-top:.6rem}
form{margin:.5rem 0}
button{width:100%;padding:.7rem;border-radius:8px;border:1px solid #cbd2d9;background:#fff;
font-size:1rem;cursor:pointer}
#pay{background:#635bff;border-color:#635bff;color:#fff;font-weight:600}
#decline{color:#b42318}
.message{padding:1rem;border-radius:8px;background:#f0f4f8}
.message.failed,.message.conflict{background:#fdecea;color:#b42318}
.message.completed{background:#e6f6ec;color:#146c2e}
.muted{color:#616e7c;font-size:.85rem}
"""

_MESSAGES = {
    "completed": "This payment has been completed. Thank you!",
    "failed": "The payment was declined. No money was taken.",
    "expired": "This checkout session has expired. Please start again from the shop.",
}


def checkout_page(snapshot: dict) -> str:
    """The page for a session ``snapshot``: pay/decline/cancel buttons while it is pending."""
    fees = snapshot["fee_details"]
    currency = snapshot["currency"]
    title = snapshot["product_title"]
    rows = [("Price", fees["base_product_price"])]
    if fees["customer_pays_fees"]:
        rows.append(("Fees", fees["transaction_fee"]))
    rows.append(("Total", fees["total_amount"]))
    table = "".join(
        f"<tr{' class=total' if label == 'Total' else ''}><td>{label}</td>"
        f"<td>{escape(format_minor(amount, currency))}</td></tr>"
        for label, amount in rows
    )
    status = snapshot["status"]
    if status == "pending":
        action = f"/checkout/{escape(snapshot['session_id'])}"
        total = escape(format_minor(fees["total_amount"], currency))
        body = (
            f"<table>{table}</table>"
            f'<form method="post" action="{action}/pay"><button id="pay" type="submit">Pay {total}</button></form>'
            f'<form method="post" action="{action}/decline"><button id="decline" type="submit">Decline</button></form>'
            f'<form method="post" action="{action}/cancel"><button id="cancel" type="submit">Cancel</button></form>'
            f'<p class="muted">Paying as {escape(snapshot["customer"].get("email", ""))}</p>'
        )
    else:
        body = f"<table>{table}</table>" + _message(status, _MESSAGES[status], _return_link(snapshot))
    return _page(f"Pay for {title}", title, body, snapshot["mode"])


def conflict_page(snapshot: dict, reason: str) -> str:
    """Answer to a pay/decline on a session that is no longer pending (sent with 409)."""
    title = snapshot["product_title"]
    return _page(
        "Payment not possible",
        title,
        _message("conflict", reason, _return_link(snapshot)),
        snapshot["mode"],
    )


def not_found_page() -> str:
    return _page(
        "Checkout not found",
        "Checkout not found",
        _message("conflict", "There is no checkout session at this address."),
    )


def _return_link(snapshot: dict) -> str:
    # Only a buyer who leaves an unpaid, still payable checkout has cancelled; after a decline or
    # an expiry the shop's success page (which asks the API) tells the buyer what happened.
    url = snapshot["cancel_url"] if snapshot["status"] == "pending" else snapshot["success_url"]
    return f'<p><a href="{escape(url)}">Return to the shop</a></p>' if url else ""


def _message(kind: str, text: str, extra: str = "") -> str:
    return f'<p class="message {kind}">{escape(text)}</p>{extra}'


def _page(head_title: str, heading: str, body: str, mode: str = "sandbox") -> str:
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(head_title)} · Khaime emulator</title><style>{_STYLE}</style></head>"
        f'<body><main><span class="badge">Sandbox emulator · {escape(mode)} key</span>'
        f"<h1>{escape(heading)}</h1>{body}</main></body></html>\n"
    )
