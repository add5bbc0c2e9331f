"""The integration a merchant writes by hand in an afternoon, to compare khaime-django with.

Deliberately plain: ``requests.post`` (a new connection each time, no session reuse), no request
validation, no persist-first row, no reuse of a pending session, no status log. It has its own
small model rather than PaymentSession: a hand-written integration stores what it needs (the
Khaime session id, the URL, the amount, a status) without our constraints and indexes, and its
rows must not take part in our purchase-key reuse. What our extra columns and indexes cost is
part of what we measure.
"""
