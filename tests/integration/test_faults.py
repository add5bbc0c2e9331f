"""Khaime failing while the buyer waits: the buyer gets a clear error page (no stack trace, no
key), and the payment session is kept in ``error`` with the reason."""

from __future__ import annotations

import time

import pytest

from khaime_django.emulator.pytest_plugin import TEST_API_KEY
from khaime_django.models import PaymentSession, Source, Status

from .conftest import changes, the_session
from .pages import parse_forms


def assert_clear_error_page(page, status_code: int) -> None:
    assert page.status_code == status_code
    assert "Payment is unavailable right now" in page.text
    assert "No payment was taken" in page.text
    assert "Traceback" not in page.text
    assert TEST_API_KEY not in page.text


def assert_kept_in_error(reason: str) -> None:
    session = the_session()
    assert session.status == Status.ERROR
    assert session.session_id is None
    assert reason in session.last_error
    assert changes(session) == [(Status.CREATED, Status.ERROR, Source.CHECKOUT)]


@pytest.mark.parametrize(
    ("fail_status", "page_status", "reason"),
    [
        (500, 502, "[500] Simulated failure"),
        (503, 502, "[503] Simulated failure"),
        (429, 503, "[429]"),
    ],
    ids=["500-gives-502", "503-gives-502", "429-gives-503"],
)
def test_khaime_error_reaches_the_buyer_as_an_error_page(buyer, khaime_emulator, fail_status, page_status, reason):
    khaime_emulator.configure(fail_rate=1, fail_status=fail_status)

    page = buyer.buy()

    assert_clear_error_page(page, page_status)
    assert_kept_in_error(reason)


def test_error_page_does_not_blame_a_timeout_when_khaime_answered_with_an_error(buyer, khaime_emulator):
    khaime_emulator.configure(fail_rate=1, fail_status=500)

    page = buyer.buy()

    assert page.status_code == 502
    assert "did not answer in time" not in page.text


def test_khaime_slower_than_the_timeout_reaches_the_buyer_as_an_error_page(buyer, khaime_emulator, settings):
    settings.KHAIME = {**settings.KHAIME, "TIMEOUT": (1, 0.25)}
    khaime_emulator.configure(latency_ms=800)

    started = time.monotonic()
    page = buyer.buy()

    # The buyer did not wait for Khaime's answer.
    assert time.monotonic() - started < 0.8
    assert_clear_error_page(page, 502)
    assert_kept_in_error("did not answer within")


def test_try_again_after_khaime_recovers_starts_a_new_session(buyer, khaime_emulator):
    khaime_emulator.configure(fail_rate=1, fail_status=500)
    error_page = buyer.buy()
    assert error_page.status_code == 502
    khaime_emulator.configure(fail_rate=0)

    (try_again,) = parse_forms(error_page.text)
    checkout_page = buyer.submit(try_again)

    assert checkout_page.status_code == 200
    assert "Pay 53.20 USD" in checkout_page.text
    statuses = sorted(PaymentSession.objects.values_list("status", flat=True))
    assert statuses == [Status.ERROR, Status.PENDING]
