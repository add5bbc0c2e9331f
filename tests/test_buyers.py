"""A guest's open session is reused, and its cancel return recorded, only for the browser that
started it: never for someone who types the same email (issue 10, item 8). Logged-in buyers keep
per-user reuse. Each browser is its own test Client."""

from __future__ import annotations

import copy
import itertools
import json
import threading

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.test import Client

from khaime_django import services
from khaime_django.models import PaymentSession, Source, Status, StatusChange
from khaime_django.services import buyers

from .buyer_helpers import buy, new_browser, same_browser
from .conftest import API_BASE, SEED_CREATE_RESPONSE

pytestmark = pytest.mark.django_db

SESSIONS_URL = f"{API_BASE}/payments/sessions"


@pytest.fixture
def khaime_creates(khaime_api):
    """Khaime answers every create with a new session (thread-safe); returns the payment URLs made."""
    made: list[str] = []
    numbers = itertools.count(1)
    lock = threading.Lock()

    def create(request):
        with lock:
            number = next(numbers)
            made.append(f"https://checkout.stripe.com/c/pay/cs_{number}")
        answer = copy.deepcopy(SEED_CREATE_RESPONSE)
        answer["data"].update(session_id=f"sess_{number}", payment_url=made[-1])
        return 201, {}, json.dumps(answer)

    khaime_api.add_callback("POST", SESSIONS_URL, callback=create)
    return made


def cancel_page(browser, session):
    return browser.get(session.cancel_url.replace("http://testserver", ""))


# -- reuse ----------------------------------------------------------------------------------------


def test_stranger_typing_the_victims_email_never_gets_the_victims_payment_url(khaime_creates):
    victim, victim_token = new_browser()
    stranger, stranger_token = new_browser()
    mine = buy(victim, victim_token, "victim@example.com")
    theirs = buy(stranger, stranger_token, "victim@example.com")
    copied = buy(stranger, victim_token, "VICTIM@example.com")  # even with the victim's own buy button
    assert mine.status_code == theirs.status_code == copied.status_code == 303
    assert mine["Location"] == khaime_creates[0]
    assert theirs["Location"] == copied["Location"] == khaime_creates[1]
    assert len(khaime_creates) == 2
    assert PaymentSession.objects.filter(status=Status.PENDING).count() == 2


def test_the_same_browser_still_reuses_its_open_session(khaime_creates):
    browser, token = new_browser()
    first = buy(browser, token)
    again = buy(browser, token, "Victim@Example.com")
    assert first["Location"] == again["Location"] == khaime_creates[0]
    assert len(khaime_creates) == 1


def test_the_same_browser_with_another_email_is_another_purchase(khaime_creates):
    browser, token = new_browser()
    buy(browser, token, "one@example.com")
    buy(browser, token, "two@example.com")
    assert len(khaime_creates) == 2


def test_what_is_stored_is_a_hash_of_a_random_token_never_the_email(khaime_creates):
    browser, token = new_browser()
    buy(browser, token)
    session = PaymentSession.objects.get()
    stored = browser.session[buyers.SESSION_KEY]
    assert session.buyer_key == buyers.buyer_key(stored)
    assert "victim" not in stored and len(session.buyer_key) == 64


def test_a_logged_in_user_reuses_their_session_from_another_browser(khaime_creates, django_user_model):
    user = django_user_model.objects.create_user("ada", email="ada@example.com")
    laptop, token = new_browser()
    phone, _token = new_browser()
    laptop.force_login(user)
    phone.force_login(user)
    assert buy(laptop, token, "ada@example.com")["Location"] == buy(phone, token, "ada@example.com")["Location"]
    assert len(khaime_creates) == 1


def test_a_guest_without_a_django_session_is_never_reused(khaime_creates, rf, settings):
    """Without django.contrib.sessions the browser cannot be told apart: no reuse at all, rather
    than reuse by what was typed."""
    settings.KHAIME = {**settings.KHAIME, "SITE_URL": "https://shop.example"}

    def start():
        request = rf.post("/")
        request.user = AnonymousUser()
        kwargs = {"amount": 5000, "currency": "USD", "product_name": "P"}
        return services.start_checkout(request=request, customer_email="victim@example.com", **kwargs)

    first, second = start(), start()
    assert first.pk != second.pk and first.payment_url != second.payment_url
    assert first.buyer_key == second.buyer_key == ""
    request = rf.get("/")
    request.user = AnonymousUser()
    assert services.cancel_session(first, request=request) is False
    assert reloaded(first).status == Status.PENDING


def test_the_buy_button_gives_the_browser_its_token_before_the_first_post(khaime_creates):
    """So a double-click on a first visit already carries the session cookie and shares a session."""
    browser, token = new_browser()
    stored = browser.session[buyers.SESSION_KEY]
    buy(browser, token)
    assert browser.session[buyers.SESSION_KEY] == stored
    assert PaymentSession.objects.get().buyer_key == buyers.buyer_key(stored)


# -- the cancel return ----------------------------------------------------------------------------


def reloaded(session):
    return PaymentSession.objects.get(pk=session.pk)


def test_a_stranger_following_the_victims_cancel_link_changes_nothing(khaime_creates):
    victim, token = new_browser()
    buy(victim, token)
    session = PaymentSession.objects.get()
    stranger = Client()
    page = cancel_page(stranger, session)
    assert page.status_code == 200
    assert "Payment cancelled" not in page.content.decode()
    assert reloaded(session).status == Status.PENDING
    assert reloaded(session).cancelled_at is None
    assert not StatusChange.objects.filter(source=Source.CANCEL).exists()
    # A stranger with a Django session (and a token) of their own changes nothing either.
    other, _token = new_browser()
    cancel_page(other, session)
    assert reloaded(session).status == Status.PENDING
    # The victim's own browser does.
    assert "Payment cancelled" in cancel_page(victim, session).content.decode()
    assert reloaded(session).status == Status.CANCELLED


def test_a_logged_in_buyer_cancels_from_any_of_their_browsers_and_no_other_user_can(khaime_creates, django_user_model):
    ada = django_user_model.objects.create_user("ada", email="ada@example.com")
    bob = django_user_model.objects.create_user("bob", email="bob@example.com")
    laptop, token = new_browser()
    laptop.force_login(ada)
    buy(laptop, token, "ada@example.com")
    session = PaymentSession.objects.get()
    bobs = Client()
    bobs.force_login(bob)
    cancel_page(bobs, session)
    assert reloaded(session).status == Status.PENDING
    phone = Client()
    phone.force_login(ada)
    cancel_page(phone, session)
    assert reloaded(session).status == Status.CANCELLED


# -- real concurrency (PostgreSQL) ----------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs PostgreSQL: SQLite serialises writers, so requests cannot race"
)
def test_victim_and_stranger_racing_with_the_same_email_each_get_their_own_session(khaime_creates):
    """Four tabs of the victim's browser and four of a stranger's POST the same purchase with the
    same email at the same instant, each request on its own connection: one Khaime session per
    browser, and no response of the stranger's carries the victim's payment_url."""
    victim, victim_token = new_browser()
    stranger, stranger_token = new_browser()
    tabs = [(same_browser(victim), victim_token, "victim") for _ in range(4)]
    tabs += [(same_browser(stranger), stranger_token, "stranger") for _ in range(4)]
    barrier = threading.Barrier(len(tabs))
    answers: dict[str, list[str]] = {"victim": [], "stranger": []}
    errors: list[BaseException] = []

    def submit(browser, token, who):
        try:
            barrier.wait(timeout=30)
            response = buy(browser, token, "victim@example.com")
            assert response.status_code == 303, response.status_code
            answers[who].append(response["Location"])
        except BaseException as error:  # noqa: BLE001 - re-raised in the test's thread below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=submit, args=tab) for tab in tabs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a request is stuck"
    assert not errors, errors
    assert len(set(answers["victim"])) == len(set(answers["stranger"])) == 1
    assert set(answers["victim"]).isdisjoint(answers["stranger"])
    assert len(khaime_creates) == 2
    assert PaymentSession.objects.count() == 2
