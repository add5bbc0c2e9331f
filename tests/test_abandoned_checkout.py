"""A checkout whose request dies after its INSERT (issue 10, items 13 and 14): the row left in
`created` is never waited on for long, is moved to `error` once it is older than any create call
can take, and a payment Khaime reports later for it still completes it.

The PostgreSQL tests kill a real process: ``start_checkout`` in a subprocess against a Khaime
that does not answer, SIGKILLed once its row is committed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from khaime_django import services
from khaime_django.models import PaymentSession, Source, Status, StatusChange
from khaime_django.services.checkout import in_flight_limit

from .conftest import SEED_CREATE_RESPONSE
from .slow_khaime import SlowKhaime
from .test_sync import sync
from .webhook_helpers import payment_event

ROOT = Path(__file__).resolve().parent.parent
EMAIL = "buyer@example.com"

shared_database = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs a database another process can open (PostgreSQL)"
)

CHILD = """
import json, os, sys
import django
django.setup()
from django.conf import settings
settings.KHAIME = json.loads(os.environ["KHAIME_JSON"])
from khaime_django import services
from django.contrib.auth.models import AnonymousUser
from django.test import RequestFactory
from khaime_django.purchases import Purchase
from khaime_django.services import buyers
purchase = Purchase.from_token(sys.argv[1])
request = RequestFactory().post("/payments/checkout/")
request.user = AnonymousUser()
request.session = {buyers.SESSION_KEY: sys.argv[3]}  # the test client's browser
services.start_checkout(request=request, customer_email=sys.argv[2], **purchase.checkout_kwargs())
"""


def database_url() -> str:
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def as_browser(client, token: str) -> None:
    """Make the test client the browser whose Django session holds ``token``."""
    from khaime_django.services import buyers

    browser = client.session
    browser[buyers.SESSION_KEY] = token
    browser.save()
    client.cookies[settings.SESSION_COOKIE_NAME] = browser.session_key


def kill_checkout_after_its_insert(buy_token, settings, client) -> PaymentSession:
    """Run start_checkout, for the test client's browser, in another process against a Khaime
    that holds the create for a minute, wait for its row to be committed, SIGKILL it; return the
    row it left behind."""
    token = "browser-token-of-the-killed-checkout"
    as_browser(client, token)
    with SlowKhaime(create_delay=60) as khaime:
        khaime_settings = {**settings.KHAIME, "API_BASE_URL": khaime.api_base_url, "SITE_URL": "https://shop.test"}
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": database_url(),
            "KHAIME_JSON": json.dumps(khaime_settings),
        }
        child = subprocess.Popen([sys.executable, "-c", CHILD, buy_token, EMAIL, token], cwd=ROOT, env=env)
        try:
            deadline = time.monotonic() + 30
            while not khaime.count("POST"):  # the row is committed before Khaime is called
                assert child.poll() is None, "the checkout process ended on its own"
                assert time.monotonic() < deadline, "the checkout process never called Khaime"
                time.sleep(0.05)
            os.kill(child.pid, signal.SIGKILL)
            assert child.wait(timeout=10) == -signal.SIGKILL
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    return PaymentSession.objects.get()


def buy(client, buy_token):
    return client.post(reverse("khaime:checkout"), {"token": buy_token, "email": EMAIL})


def age(session: PaymentSession, seconds: float) -> None:
    PaymentSession.objects.filter(pk=session.pk).update(created_at=timezone.now() - timedelta(seconds=seconds))


@pytest.fixture
def stuck_row(make_session, client):
    """A row in `created` for the $50.00 buy button's purchase, as a request from the test
    client's browser that died after its INSERT leaves it."""

    def make(seconds_ago: float = 0):
        from khaime_django.conf import khaime_settings
        from khaime_django.purchases import Purchase
        from khaime_django.services import buyers
        from khaime_django.services.checkout import _purchase_key

        token = client.session.get(buyers.SESSION_KEY) or "browser-token-of-the-test-client"
        as_browser(client, token)

        purchase = Purchase(amount=5000, currency="USD", product_name="Premium Plan")
        request = purchase.session_request(
            customer={"email": EMAIL},
            success_url="https://shop.test/s",
            cancel_url="https://shop.test/c",
            reference="r",
        )
        row = make_session(
            Status.CREATED,
            purchase_key=_purchase_key(None, buyers.buyer_key(token), request, khaime_settings.mode),
            buyer_key=buyers.buyer_key(token),
            total_amount=None,
        )
        age(row, seconds_ago)
        return PaymentSession.objects.get(pk=row.pk)

    return make


# -- item 14: a short, bounded wait, then a clear 503 --------------------------------------------


@pytest.mark.django_db
def test_a_buy_waits_only_briefly_for_a_row_being_created_then_says_try_again(
    client, khaime_api, buy_token, stuck_row, settings
):
    """0.1.0 waited the whole in-flight limit (30 s with the test settings, about 50 s with the
    defaults), past gunicorn's 30 s worker timeout."""
    settings.KHAIME = {**settings.KHAIME, "IN_FLIGHT_WAIT": 0.5}
    row = stuck_row()
    started = time.monotonic()
    page = buy(client, buy_token)
    took = time.monotonic() - started
    assert page.status_code == 503
    assert page["Retry-After"] == "1"
    assert b"still being created" in page.content
    assert 0.5 <= took < 2
    assert len(khaime_api.calls) == 0
    assert PaymentSession.objects.get(pk=row.pk).status == Status.CREATED  # its request may still be alive


@pytest.mark.django_db
def test_a_row_older_than_the_in_flight_limit_is_never_waited_on(client, seed_create, buy_token, stuck_row, settings):
    settings.KHAIME = {**settings.KHAIME, "IN_FLIGHT_WAIT": 30}
    row = stuck_row(seconds_ago=in_flight_limit() + 1)
    started = time.monotonic()
    page = buy(client, buy_token)
    assert time.monotonic() - started < 2
    assert page.status_code == 303
    assert page["Location"] == SEED_CREATE_RESPONSE["data"]["payment_url"]
    row.refresh_from_db()
    assert (row.status, row.last_error) == (Status.ERROR, "Abandoned while creating the Khaime session.")
    assert PaymentSession.objects.filter(status=Status.PENDING).count() == 1


def test_in_flight_wait_defaults_to_a_few_seconds():
    from khaime_django.conf import DEFAULTS

    assert 0 < DEFAULTS["IN_FLIGHT_WAIT"] <= 5


# -- item 13: khaime_sync repairs the row; a later payment still completes it --------------------


@pytest.mark.django_db
@pytest.mark.parametrize("mode", [(), ("--offline",)])
def test_khaime_sync_moves_rows_abandoned_while_creating_to_error(khaime_api, make_session, stuck_row, mode):
    """0.1.0 looked only at pending/cancelled rows with a session id: the row stayed `created`."""
    young = make_session(Status.CREATED)  # its request may still be talking to Khaime
    old = stuck_row(seconds_ago=in_flight_limit() + 1)
    output = sync(*mode)
    assert "moved 1 abandoned while creating to error" in output
    assert "requests 0" in output
    assert len(khaime_api.calls) == 0
    old.refresh_from_db()
    assert (old.status, old.last_error) == (Status.ERROR, "Abandoned while creating the Khaime session.")
    change = StatusChange.objects.get(session=old)
    assert (change.from_status, change.to_status, change.source, change.detail) == (
        Status.CREATED,
        Status.ERROR,
        Source.SYNC,
        "abandoned while creating",
    )
    assert PaymentSession.objects.get(pk=young.pk).status == Status.CREATED


@pytest.mark.django_db
def test_abandoned_rows_are_moved_in_batches(make_session):
    rows = [make_session(Status.CREATED, created_at=timezone.now() - timedelta(hours=1)) for _ in range(5)]
    assert services.abandon_stale_created(dry_run=True) == 5
    assert services.abandon_stale_created(batch_size=2) == 5
    assert {row.status for row in PaymentSession.objects.filter(pk__in=[r.pk for r in rows])} == {Status.ERROR}
    assert services.abandon_stale_created() == 0


@pytest.mark.django_db
def test_dry_run_says_what_it_would_move(khaime_api, make_session):
    make_session(Status.CREATED, created_at=timezone.now() - timedelta(hours=1))
    assert "would move 1 abandoned while creating to error" in sync("--offline", "--dry-run")
    assert PaymentSession.objects.get().status == Status.CREATED


@pytest.mark.django_db
def test_a_payment_for_an_abandoned_row_still_completes_it(khaime_api, deliver, stuck_row):
    row = stuck_row(seconds_ago=in_flight_limit() + 1)
    sync("--offline")
    row.refresh_from_db()
    assert row.status == Status.ERROR
    response = deliver(payment_event("payment.succeeded", row, session_id=None))
    assert response.status_code == 200
    row.refresh_from_db()
    assert row.status == Status.COMPLETED


# -- with a real killed process (PostgreSQL) -------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@shared_database
def test_a_checkout_killed_after_its_insert_is_repaired_and_its_payment_still_lands(
    client, khaime_api, deliver, buy_token, settings
):
    row = kill_checkout_after_its_insert(buy_token, settings, client)
    assert (row.status, row.session_id) == (Status.CREATED, None)

    # The next Buy for the same purchase: a short wait, then "try again", not a hung worker.
    settings.KHAIME = {**settings.KHAIME, "IN_FLIGHT_WAIT": 0.5}
    started = time.monotonic()
    page = buy(client, buy_token)
    assert page.status_code == 503 and "Retry-After" in page
    assert time.monotonic() - started < 2

    # Not yet past the in-flight limit: khaime_sync leaves it to its (maybe living) request.
    assert "abandoned" not in sync("--offline")
    age(row, in_flight_limit() + 1)
    assert "moved 1 abandoned while creating to error" in sync("--offline")
    row.refresh_from_db()
    assert row.status == Status.ERROR

    # Khaime may have made the session after all; its payment, matched by reference, completes it.
    assert deliver(payment_event("payment.succeeded", row, session_id=None)).status_code == 200
    row.refresh_from_db()
    assert row.status == Status.COMPLETED


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@shared_database
def test_a_buy_after_a_killed_checkout_past_the_limit_starts_a_new_session_at_once(
    client, seed_create, buy_token, settings
):
    row = kill_checkout_after_its_insert(buy_token, settings, client)
    age(row, in_flight_limit() + 1)
    started = time.monotonic()
    page = buy(client, buy_token)
    assert time.monotonic() - started < 2
    assert page.status_code == 303
    row.refresh_from_db()
    assert row.status == Status.ERROR
    assert PaymentSession.objects.filter(status=Status.PENDING).count() == 1
