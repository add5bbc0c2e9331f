"""System checks for the KHAIME settings (`manage.py check`)."""

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from khaime_django.checks import check_khaime_settings


def ids(settings, **changes):
    settings.KHAIME = {**settings.KHAIME, **changes}
    return [message.id for message in check_khaime_settings()]


def test_test_settings_pass_every_check(settings):
    assert ids(settings) == []


def test_missing_key_is_an_error(settings):
    assert ids(settings, API_KEY="") == ["khaime.E001"]


@pytest.mark.parametrize("key", ["sk_live_abc", "pk_test_abc", "pk_sandbox_", "pk_sandbox_has space", "whsec_abc"])
def test_malformed_key_is_an_error(settings, key):
    assert ids(settings, API_KEY=key) == ["khaime.E002"]


def test_live_key_with_debug_is_a_warning(settings):
    settings.DEBUG = True
    assert ids(settings, API_KEY="pk_live_abc123") == ["khaime.W001"]


def test_live_key_without_debug_passes(settings):
    settings.DEBUG = False
    assert ids(settings, API_KEY="pk_live_abc123") == []


def test_sandbox_key_with_debug_passes(settings):
    settings.DEBUG = True
    assert ids(settings) == []


def test_plain_http_base_url_is_an_error(settings):
    assert ids(settings, API_BASE_URL="http://api.khaime.com/api/v1/partner") == ["khaime.E003"]


@pytest.mark.parametrize("base_url", ["http://127.0.0.1:8765/api/v1/partner", "http://localhost:8765/api/v1/partner"])
def test_plain_http_to_the_local_emulator_is_allowed(settings, base_url):
    assert ids(settings, API_BASE_URL=base_url) == []


def test_no_webhook_secret_is_a_warning(settings):
    assert ids(settings, WEBHOOK_SECRETS=[]) == ["khaime.W002"]


def test_webhook_secrets_that_are_not_strings_are_an_error(settings):
    assert ids(settings, WEBHOOK_SECRETS=["whsec_ok", ""]) == ["khaime.E004"]
    assert ids(settings, WEBHOOK_SECRETS=[42]) == ["khaime.E004"]


@pytest.mark.parametrize("timeout", [(0, 10), (-1, 5), ("3", 10), (1, 2, 3), "fast", None])
def test_bad_timeout_is_an_error(settings, timeout):
    assert ids(settings, TIMEOUT=timeout) == ["khaime.E005"]


@pytest.mark.parametrize("timeout", [(0, 1), "slow", (True, 1)])
def test_bad_return_timeout_is_an_error(settings, timeout):
    assert ids(settings, RETURN_TIMEOUT=timeout) == ["khaime.E005"]


def test_single_number_timeout_passes(settings):
    assert ids(settings, TIMEOUT=5) == []


@pytest.mark.parametrize("retries", [-1, 11, "2", 2.0, True, None])
def test_bad_max_retries_is_an_error(settings, retries):
    assert ids(settings, MAX_RETRIES=retries) == ["khaime.E006"]


@pytest.mark.parametrize("retries", [0, 10])
def test_max_retries_bounds_pass(settings, retries):
    assert ids(settings, MAX_RETRIES=retries) == []


def test_unknown_setting_is_a_warning(settings):
    assert ids(settings, API_SECRET="typo") == ["khaime.W003"]


def test_khaime_not_a_dict_is_an_error(settings):
    settings.KHAIME = "pk_sandbox_abc"
    assert [message.id for message in check_khaime_settings()] == ["khaime.E000"]


def test_manage_py_check_reports_khaime_errors(settings):
    settings.KHAIME = {**settings.KHAIME, "API_KEY": ""}
    with pytest.raises(SystemCheckError, match=r"khaime\.E001"):
        call_command("check", tags=["khaime"])
