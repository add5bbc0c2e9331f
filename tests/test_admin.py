"""Django admin for payment sessions: readable money, filters, exact search, read-only Khaime
fields, the status history inline and a wired "Refresh status from Khaime" action."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from khaime_django.models import PaymentSession, Source, Status, StatusChange
from khaime_django.transitions import transition

from .conftest import API_BASE

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:khaime_django_paymentsession_changelist"


def changelist(admin_client, **params):
    response = admin_client.get(reverse(CHANGELIST), params)
    assert response.status_code == 200
    return response


def listed(response) -> list[PaymentSession]:
    return list(response.context["cl"].result_list)


def change_page(admin_client, session):
    return admin_client.get(reverse("admin:khaime_django_paymentsession_change", args=[session.pk]))


def run_refresh_action(admin_client, *sessions):
    return admin_client.post(
        reverse(CHANGELIST),
        {"action": "refresh_from_khaime", "_selected_action": [s.pk for s in sessions]},
        follow=True,
    )


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """admin_client creates a superuser; the default PBKDF2 hashing would cost ~1 s per test."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def catalogue(make_session):
    """Sessions that differ in every filterable way."""
    return {
        "dollars": make_session(Status.PENDING, product_name="Premium Plan", customer_email="ada@example.com"),
        "yen": make_session(
            Status.COMPLETED,
            amount=5000,
            total_amount=5000,
            currency="JPY",
            product_name="Tea set",
            customer_email="bo@example.com",
            mode="live",
        ),
        "dinar": make_session(
            Status.FAILED,
            amount=1234,
            total_amount=1234,
            currency="KWD",
            product_name="Dates",
            payment_type="subscription",
            created_at=timezone.now() - timedelta(days=40),
        ),
    }


# -- changelist -----------------------------------------------------------------------------------


def test_changelist_shows_readable_money_and_status(admin_client, catalogue):
    page = changelist(admin_client).content.decode()
    assert "$53.20" in page
    assert "¥5,000" in page
    assert "1.234" in page
    assert "Pending" in page and "Completed" in page and "Failed" in page
    assert "ada@example.com" in page
    assert "Premium Plan" in page


def test_changelist_offers_every_filter(admin_client, catalogue):
    filters = {spec.title for spec in changelist(admin_client).context["cl"].filter_specs}
    assert {"status", "mode", "payment type", "currency", "created at"} <= filters


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status__exact": "completed"}, ["yen"]),
        ({"mode__exact": "live"}, ["yen"]),
        ({"payment_type__exact": "subscription"}, ["dinar"]),
        ({"currency__exact": "KWD"}, ["dinar"]),
    ],
)
def test_changelist_filters(admin_client, catalogue, params, expected):
    assert listed(changelist(admin_client, **params)) == [catalogue[name] for name in expected]


def test_changelist_filters_by_date(admin_client, catalogue):
    since = (timezone.now() - timedelta(days=7)).isoformat()
    shown = listed(changelist(admin_client, created_at__gte=since))
    assert catalogue["dinar"] not in shown
    assert catalogue["dollars"] in shown


def test_changelist_filters_by_year(admin_client, catalogue):
    year = catalogue["dollars"].created_at.year
    assert catalogue["dollars"] in listed(changelist(admin_client, created_at__year=year))


def test_currency_filter_offers_the_currencies_in_use(admin_client, catalogue):
    [spec] = [spec for spec in changelist(admin_client).context["cl"].filter_specs if spec.title == "currency"]
    assert [code for code, _label in spec.lookup_choices] == ["JPY", "KWD", "USD"]


def test_changelist_runs_no_whole_table_distinct_query(admin_client, catalogue):
    # No whole-table SELECT DISTINCT: payment types are fixed, currencies come from recent rows.
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        changelist(admin_client)
    distinct = [q["sql"] for q in captured.captured_queries if "DISTINCT" in q["sql"].upper()]
    assert distinct == []


def test_search_by_reference(admin_client, catalogue):
    reference = catalogue["yen"].reference
    assert listed(changelist(admin_client, q=str(reference))) == [catalogue["yen"]]


def test_search_by_the_short_reference_the_changelist_shows(admin_client, catalogue):
    short = str(catalogue["yen"].reference)[:8]
    assert short in changelist(admin_client).content.decode()
    assert listed(changelist(admin_client, q=short.upper())) == [catalogue["yen"]]


def test_search_by_khaime_session_id(admin_client, catalogue):
    assert listed(changelist(admin_client, q=catalogue["dinar"].session_id)) == [catalogue["dinar"]]


def test_search_by_email_ignores_case(admin_client, catalogue):
    assert listed(changelist(admin_client, q="ADA@example.com")) == [catalogue["dollars"]]


def test_search_by_part_of_the_product_name(admin_client, catalogue):
    assert listed(changelist(admin_client, q="premium")) == [catalogue["dollars"]]


def test_search_that_matches_nothing_lists_nothing(admin_client, catalogue):
    assert listed(changelist(admin_client, q="nothing-like-this")) == []


def test_empty_search_lists_everything(admin_client, catalogue):
    assert len(listed(changelist(admin_client, q="  "))) == 3


# -- change page ----------------------------------------------------------------------------------


def test_change_page_shows_fee_details_as_money(admin_client, make_session):
    session = make_session(
        fee_details={
            "base_product_price": 5000,
            "transaction_fee": 320,
            "total_amount": 5320,
            "customer_pays_fees": True,
        }
    )
    page = change_page(admin_client, session).content.decode()
    assert "<dt>base product price</dt><dd>$50.00</dd>" in page
    assert "<dt>transaction fee</dt><dd>$3.20</dd>" in page
    assert "<dt>total amount</dt><dd>$53.20</dd>" in page
    assert "<dt>customer pays fees</dt><dd>yes</dd>" in page


def test_change_page_without_fee_details_shows_a_dash(admin_client, make_session):
    assert "—" in change_page(admin_client, make_session(fee_details={})).content.decode()


def test_change_page_shows_the_status_history_inline(admin_client, make_session):
    session = make_session(Status.PENDING)
    transition(session, Status.CANCELLED, source=Source.CANCEL, detail="buyer cancelled")
    transition(session, Status.COMPLETED, source=Source.WEBHOOK, detail="payment.succeeded")
    response = change_page(admin_client, session)
    [inline] = response.context["inline_admin_formsets"]
    assert inline.opts.model is StatusChange
    page = response.content.decode()
    assert "buyer cancelled" in page
    assert "payment.succeeded" in page


def test_status_history_inline_cannot_be_edited_or_added_to(admin_client, make_session):
    session = make_session(Status.PENDING)
    transition(session, Status.CANCELLED, source=Source.CANCEL)
    [inline] = change_page(admin_client, session).context["inline_admin_formsets"]
    assert not inline.has_add_permission
    assert not inline.has_change_permission
    assert not inline.formset.can_delete


def test_khaime_fields_are_read_only(admin_client, make_session):
    response = change_page(admin_client, make_session())
    readonly = set(response.context["adminform"].readonly_fields)
    khaime_fields = {
        "session_id",
        "stripe_session_id",
        "payment_url",
        "status",
        "mode",
        "payment_type",
        "total",
        "fees",
        "expires_at",
        "completed_at",
        "reference",
        "customer_email",
    }
    assert khaime_fields <= readonly
    page = response.content.decode()
    assert 'name="session_id"' not in page
    assert 'name="status"' not in page


def test_saving_the_change_page_cannot_change_khaime_fields(admin_client, make_session):
    session = make_session(Status.PENDING)
    url = reverse("admin:khaime_django_paymentsession_change", args=[session.pk])
    response = admin_client.post(
        url,
        {
            "status": "completed",
            "session_id": "sess_forged",
            "needs_review": "on",
            "review_reason": "checked by hand",
            "status_changes-TOTAL_FORMS": "0",
            "status_changes-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302
    session.refresh_from_db()
    assert session.status == Status.PENDING
    assert session.session_id != "sess_forged"
    assert session.review_reason == "checked by hand"


def test_add_is_not_permitted(admin_client):
    assert admin_client.get(reverse("admin:khaime_django_paymentsession_add")).status_code == 403


# -- the refresh action ---------------------------------------------------------------------------


def test_refresh_action_is_in_the_actions_dropdown(admin_client, catalogue):
    page = changelist(admin_client).content.decode()
    assert '<option value="refresh_from_khaime">Refresh status from Khaime</option>' in page


def test_refresh_action_completes_a_session_khaime_says_is_paid(admin_client, make_session, khaime_says):
    session = make_session(Status.PENDING)
    khaime_says(session, "completed")
    response = run_refresh_action(admin_client, session)
    assert response.status_code == 200
    session.refresh_from_db()
    assert session.status == Status.COMPLETED
    assert StatusChange.objects.get().source == Source.ADMIN
    [message] = [str(m) for m in get_messages(response.wsgi_request)]
    assert message.startswith("1 session changed status; 0 unchanged; 0 could not be checked")


def test_refresh_action_checks_at_most_its_limit_and_says_so(
    admin_client, make_session, khaime_says, khaime_api, monkeypatch
):
    from khaime_django.admin import base

    monkeypatch.setattr(base, "REFRESH_ACTION_LIMIT", 2)
    sessions = [make_session(Status.PENDING) for _ in range(3)]
    for session in sessions:
        khaime_says(session, "pending")
    response = run_refresh_action(admin_client, *sessions)
    assert len(khaime_api.calls) == 2
    assert "Only the 2 newest selected sessions were checked" in response.content.decode()


def test_refresh_action_counts_unchanged_sessions(admin_client, make_session, khaime_says):
    session = make_session(Status.PENDING)
    khaime_says(session, "pending")
    response = run_refresh_action(admin_client, session)
    [message] = [str(m) for m in get_messages(response.wsgi_request)]
    assert message.startswith("0 sessions changed status; 1 unchanged")
    session.refresh_from_db()
    assert session.last_checked_at is not None


def test_refresh_action_reports_khaime_errors_without_crashing(admin_client, make_session, khaime_api, khaime_says):
    broken, fine = make_session(Status.PENDING), make_session(Status.PENDING)
    khaime_api.get(f"{API_BASE}/payments/sessions/{broken.session_id}", body=requests.ConnectionError("down"))
    khaime_says(fine, "completed")
    response = run_refresh_action(admin_client, broken, fine)
    assert response.status_code == 200
    messages = [str(m) for m in get_messages(response.wsgi_request)]
    assert any(str(broken.reference) in m and "could not be reached" in m for m in messages)
    assert any("1 session changed status; 0 unchanged; 1 could not be checked" in m for m in messages)
    broken.refresh_from_db()
    fine.refresh_from_db()
    assert (broken.status, fine.status) == (Status.PENDING, Status.COMPLETED)


def test_refresh_action_never_shows_the_key(admin_client, make_session, khaime_api):
    session = make_session(Status.PENDING)
    khaime_api.get(
        f"{API_BASE}/payments/sessions/{session.session_id}",
        json={"success": False, "error": "Invalid API key"},
        status=401,
    )
    response = run_refresh_action(admin_client, session)
    assert "pk_sandbox_test_0123456789" not in response.content.decode()


def test_refresh_action_skips_sessions_khaime_never_created(admin_client, make_session, khaime_api):
    response = run_refresh_action(admin_client, make_session(Status.ERROR, session_id=None))
    assert response.status_code == 200
    assert len(khaime_api.calls) == 0


def test_payment_sessions_cannot_be_deleted_from_admin(admin_client, catalogue):
    session = catalogue["dollars"]
    response = admin_client.get(reverse("admin:khaime_django_paymentsession_delete", args=[session.pk]))
    assert response.status_code == 403
    assert "delete_selected" not in changelist(admin_client).content.decode()
    assert PaymentSession.objects.filter(pk=session.pk).exists()


# -- who may refresh ------------------------------------------------------------------------------


@pytest.fixture
def view_only_staff(client, django_user_model):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_paymentsession"))
    client.force_login(user)
    return client


def test_view_only_staff_are_not_offered_the_refresh_action(view_only_staff, catalogue):
    page = view_only_staff.get(reverse(CHANGELIST))
    assert page.status_code == 200
    assert "refresh_from_khaime" not in page.content.decode()


def test_view_only_staff_cannot_post_the_refresh_action(view_only_staff, make_session, khaime_api):
    session = make_session(Status.PENDING)
    response = run_refresh_action(view_only_staff, session)
    assert response.status_code == 200
    assert len(khaime_api.calls) == 0
    session.refresh_from_db()
    assert session.status == Status.PENDING
    assert session.last_checked_at is None
    assert not StatusChange.objects.exists()


def test_staff_with_the_change_permission_can_refresh(client, django_user_model, make_session, khaime_says):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("operator", password="x", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_paymentsession", "change_paymentsession"]))
    client.force_login(user)
    session = make_session(Status.PENDING)
    khaime_says(session, "completed")
    run_refresh_action(client, session)
    session.refresh_from_db()
    assert session.status == Status.COMPLETED
