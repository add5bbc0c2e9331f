"""The suite's own promises about itself hold (tests/conftest.py)."""

from __future__ import annotations

import pytest

from khaime_django.client import get_client
from khaime_django.exceptions import KhaimeConnectionError

from .conftest import API_BASE, unstubbed_calls


def test_an_unstubbed_khaime_call_is_refused_and_reported(khaime_api):
    with pytest.raises(KhaimeConnectionError):
        get_client().get_session("sess_nobody_stubbed")
    assert unstubbed_calls(khaime_api) == [f"GET {API_BASE}/payments/sessions/sess_nobody_stubbed"] * 3
    khaime_api.calls.reset()  # reported; now keep this test's own teardown from failing on it


def test_a_stubbed_failure_is_not_reported_as_unstubbed(khaime_api):
    import requests

    khaime_api.get(f"{API_BASE}/payments/sessions/s", body=requests.ConnectionError("down"))
    with pytest.raises(KhaimeConnectionError):
        get_client(max_retries=0).get_session("s")
    assert unstubbed_calls(khaime_api) == []


def test_tests_run_under_their_own_settings_module():
    import os

    from django.conf import settings

    assert os.environ["DJANGO_SETTINGS_MODULE"] == "tests.settings"
    assert settings.SECRET_KEY == "tests-only-insecure-secret-key"
