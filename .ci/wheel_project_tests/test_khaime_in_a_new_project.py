"""khaime-django as a stranger gets it: installed from the wheel into a project made by
`django-admin startproject`. .ci/wheel-check copies this file into that project and runs it
there; nothing from the repository is importable then, so a template, static file, migration or
the pytest plugin missing from the wheel fails here.
"""

import re
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders
from django.urls import reverse

import khaime_django
from khaime_django.models import PaymentSession, Status


def installed(path) -> bool:
    return "site-packages" in Path(path).parts


def buy(client) -> PaymentSession:
    """The buyer opens the product page and presses the buy button."""
    page = client.get(reverse("product"))
    html = page.content.decode()
    assert 'class="khaime-buy-button"' in html
    token = re.search(r'name="token" value="([^"]+)"', html).group(1)
    checkout = client.post(reverse("khaime:checkout"), {"token": token, "email": "buyer@example.com"})
    session = PaymentSession.objects.get()
    assert checkout.status_code == 303
    assert checkout["Location"] == session.payment_url
    return session


def test_the_app_is_the_installed_wheel():
    assert installed(khaime_django.__file__)


def test_the_emulator_fixture_comes_from_the_wheels_pytest11_entry_point(request):
    plugin = request.config.pluginmanager.get_plugin("khaime_emulator")
    assert plugin is not None
    assert plugin.__name__ == "khaime_django.emulator.pytest_plugin"
    assert installed(plugin.__file__)


def test_the_static_files_ship():
    found = finders.find("khaime_django/khaime.css")
    assert found is not None
    assert installed(found)


@pytest.mark.django_db
def test_a_buyer_pays_through_the_buy_button_and_the_emulator(client, khaime_emulator):
    session = buy(client)

    khaime_emulator.complete(session.session_id)
    page = client.get(session.get_absolute_url())

    html = page.content.decode()
    assert "Payment received" in html
    assert "khaime_django/khaime.css" in html  # the app's base template, from the wheel
    session.refresh_from_db()
    assert session.status == Status.COMPLETED


@pytest.mark.django_db
def test_the_admin_lists_and_shows_payment_sessions(client, admin_client, khaime_emulator):
    session = buy(client)

    changelist = admin_client.get(reverse("admin:khaime_django_paymentsession_changelist"))
    change = admin_client.get(reverse("admin:khaime_django_paymentsession_change", args=[session.pk]))
    webhooks = admin_client.get(reverse("admin:khaime_django_webhookevent_changelist"))

    assert changelist.status_code == 200
    assert "Premium Plan" in changelist.content.decode()
    assert change.status_code == 200
    assert webhooks.status_code == 200
