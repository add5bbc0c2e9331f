"""The KHAIME settings: defaults, normalisation, read on every access (never copied at import)."""

from datetime import timedelta

import pytest
from django.test import override_settings

from khaime_django.conf import DEFAULT_API_BASE_URL, DEFAULTS, khaime_settings
from khaime_django.exceptions import KhaimeConfigurationError


def test_settings_are_read_on_every_access(settings):
    settings.KHAIME = {**settings.KHAIME, "MAX_RETRIES": 7}
    assert khaime_settings.MAX_RETRIES == 7
    with override_settings(KHAIME={**settings.KHAIME, "MAX_RETRIES": 1}):
        assert khaime_settings.MAX_RETRIES == 1
    assert khaime_settings.MAX_RETRIES == 7


def test_unset_keys_take_their_defaults(settings):
    settings.KHAIME = {"API_KEY": "pk_sandbox_x"}
    assert khaime_settings.API_BASE_URL == DEFAULT_API_BASE_URL
    assert khaime_settings.TIMEOUT == (3.05, 10)
    assert khaime_settings.TOKEN_MAX_AGE == DEFAULTS["TOKEN_MAX_AGE"]


def test_missing_khaime_setting_means_all_defaults(settings):
    del settings.KHAIME
    assert khaime_settings.API_KEY == ""
    assert khaime_settings.unknown_keys() == []


def test_khaime_setting_that_is_not_a_dict_is_a_configuration_error(settings):
    settings.KHAIME = [("API_KEY", "pk_sandbox_x")]
    with pytest.raises(KhaimeConfigurationError):
        _ = khaime_settings.API_KEY


def test_unknown_setting_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="NOPE"):
        _ = khaime_settings.NOPE


def test_unknown_keys_are_listed(settings):
    settings.KHAIME = {**settings.KHAIME, "API_SECRET": "x", "TIMEOUTS": 3}
    assert khaime_settings.unknown_keys() == ["API_SECRET", "TIMEOUTS"]


def test_base_url_loses_its_trailing_slash(settings):
    settings.KHAIME = {**settings.KHAIME, "API_BASE_URL": "https://api.khaime.com/api/v1/partner/"}
    assert khaime_settings.API_BASE_URL == "https://api.khaime.com/api/v1/partner"


def test_a_single_number_timeout_is_used_for_connect_and_read(settings):
    settings.KHAIME = {**settings.KHAIME, "TIMEOUT": 4, "RETURN_TIMEOUT": 1.5}
    assert khaime_settings.TIMEOUT == (4, 4)
    assert khaime_settings.RETURN_TIMEOUT == (1.5, 1.5)


def test_a_list_timeout_becomes_the_tuple_requests_needs(settings):
    settings.KHAIME = {**settings.KHAIME, "TIMEOUT": [3, 9], "RETURN_TIMEOUT": [1, 2]}
    assert khaime_settings.TIMEOUT == (3, 9)
    assert khaime_settings.RETURN_TIMEOUT == (1, 2)


def test_a_single_webhook_secret_string_becomes_a_list(settings):
    settings.KHAIME = {**settings.KHAIME, "WEBHOOK_SECRETS": "whsec_one"}
    assert khaime_settings.WEBHOOK_SECRETS == ["whsec_one"]
    settings.KHAIME = {**settings.KHAIME, "WEBHOOK_SECRETS": ""}
    assert khaime_settings.WEBHOOK_SECRETS == []


def test_sync_grace_in_seconds_becomes_a_timedelta(settings):
    settings.KHAIME = {**settings.KHAIME, "SYNC_GRACE": 90}
    assert khaime_settings.SYNC_GRACE == timedelta(seconds=90)


@pytest.mark.parametrize(("key", "mode"), [("pk_live_abc", "live"), ("pk_sandbox_abc", "sandbox"), ("", "sandbox")])
def test_mode_follows_the_key_prefix(settings, key, mode):
    settings.KHAIME = {**settings.KHAIME, "API_KEY": key}
    assert khaime_settings.mode == mode


@pytest.mark.parametrize(
    ("base_url", "loopback"),
    [
        ("http://127.0.0.1:8765/api/v1/partner", True),
        ("http://localhost:8765/api", True),
        ("http://[::1]:8765/api", True),
        ("https://api.khaime.com/api/v1/partner", False),
        ("http://localhost.evil.test/api", False),
    ],
)
def test_api_is_loopback_only_for_this_machine(settings, base_url, loopback):
    settings.KHAIME = {**settings.KHAIME, "API_BASE_URL": base_url}
    assert khaime_settings.api_is_loopback is loopback


def test_allowed_payment_origins_include_the_emulators_origin(settings):
    settings.KHAIME = {
        **settings.KHAIME,
        "API_BASE_URL": "http://127.0.0.1:8765/api/v1/partner",
        "ALLOWED_PAYMENT_ORIGINS": ["http://pay.lan:9000/"],
    }
    assert khaime_settings.allowed_payment_origins() == {"http://127.0.0.1:8765", "http://pay.lan:9000"}


def test_allowed_payment_origins_exclude_a_remote_api(settings):
    assert khaime_settings.allowed_payment_origins() == set()
