"""System checks for the KHAIME settings (`manage.py check`)."""

import re
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings
from django.urls import include, path

from khaime_django import checks
from khaime_django.checks import check_khaime_deploy, check_khaime_settings, check_khaime_urls, closest_setting
from khaime_django.conf import DEFAULTS

DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.fixture(autouse=True)
def development(settings):
    """A developer's settings: DEBUG on (so the production-only SITE_URL warnings stay quiet
    unless a test turns DEBUG off)."""
    settings.DEBUG = True
    settings.ALLOWED_HOSTS = ["testserver"]


def ids(settings, **changes):
    settings.KHAIME = {**settings.KHAIME, **changes}
    return [message.id for message in check_khaime_settings()]


def test_test_settings_pass_every_check(settings):
    assert ids(settings) == []


@pytest.mark.django_db
def test_missing_key_is_only_a_warning_so_migrate_runs_without_one(settings):
    assert ids(settings, API_KEY="") == ["khaime.W004"]
    call_command("migrate", "--check", verbosity=0)  # the warning does not block migrate
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def test_missing_key_is_an_error_for_check_deploy(settings):
    settings.KHAIME = {**settings.KHAIME, "API_KEY": ""}
    assert [message.id for message in check_khaime_deploy()] == ["khaime.E001"]
    with pytest.raises(SystemCheckError, match=r"khaime\.E001"):
        call_command("check", "--deploy", tags=["khaime"])


def test_a_key_passes_the_deploy_check(settings):
    assert check_khaime_deploy() == []


def test_every_key_hint_names_the_dashboard_path_of_the_api_facts(settings):
    settings.KHAIME = {**settings.KHAIME, "API_KEY": ""}
    hints = [message.hint for message in [*check_khaime_deploy(), *check_khaime_settings()]]
    assert all("Settings > API & Integrations" in hint for hint in hints), hints
    settings.KHAIME = {**settings.KHAIME, "WEBHOOK_SECRETS": []}
    [w002] = [message for message in check_khaime_settings() if message.id == "khaime.W002"]
    assert "Settings > API)" in w002.hint


@pytest.mark.parametrize("key", ["sk_live_abc", "pk_test_abc", "pk_sandbox_", "pk_sandbox_has space", "whsec_abc"])
def test_malformed_key_is_an_error(settings, key):
    assert ids(settings, API_KEY=key) == ["khaime.E002"]


def test_live_key_with_debug_is_a_warning(settings):
    settings.DEBUG = True
    assert ids(settings, API_KEY="pk_live_abc123") == ["khaime.W001"]


def test_live_key_without_debug_passes(settings):
    settings.DEBUG = False
    assert ids(settings, API_KEY="pk_live_abc123", SITE_URL="https://shop.example") == []


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
    assert ids(settings, COLOUR="blue") == ["khaime.W003"]


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("WEBHOOK_SECRET", "WEBHOOK_SECRETS"),
        ("webhook_secrets", "WEBHOOK_SECRETS"),
        ("SITEURL", "SITE_URL"),
        ("TIMEOUTS", "TIMEOUT"),
        ("API_KEYS", "API_KEY"),
        ("COLOUR", None),
    ],
)
def test_closest_setting(typo, meant):
    assert closest_setting(typo) == meant


def test_unknown_setting_warning_suggests_the_closest_name(settings):
    settings.KHAIME = {**settings.KHAIME, "WEBHOOK_SECRET": ["whsec_x"]}
    [w003] = [message for message in check_khaime_settings() if message.id == "khaime.W003"]
    assert "Did you mean 'WEBHOOK_SECRETS'?" in w003.msg
    assert all(name in w003.hint for name in DEFAULTS)


@pytest.mark.parametrize("typo", ["API_BASE", "API_BASE_URl", "API_URL", "BASE_URL", "api_base_url"])
def test_a_misspelled_api_base_url_is_an_error_not_a_silent_live_api(settings, typo):
    khaime = {key: value for key, value in settings.KHAIME.items() if key != "API_BASE_URL"}
    settings.KHAIME = {**khaime, typo: "http://127.0.0.1:8765/api/v1/partner"}
    [e008] = check_khaime_settings()
    assert e008.id == "khaime.E008"
    assert "did you mean 'API_BASE_URL'" in e008.msg and "live Khaime API" in e008.msg
    with pytest.raises(SystemCheckError, match=r"khaime\.E008"):
        call_command("check", tags=["khaime"])


def test_a_stray_base_url_beside_the_real_one_is_only_a_warning(settings):
    assert ids(settings, API_BASE="http://127.0.0.1:1/") == ["khaime.W003"]


# -- the site's origin ----------------------------------------------------------------------------


def test_production_without_site_url_is_a_warning(settings):
    settings.DEBUG = False
    assert ids(settings) == ["khaime.W005"]
    [w005] = check_khaime_settings()
    assert "SECURE_PROXY_SSL_HEADER" in w005.hint and "USE_X_FORWARDED_HOST" in w005.hint


def test_production_with_site_url_passes(settings):
    settings.DEBUG = False
    assert ids(settings, SITE_URL="https://shop.example") == []


def test_any_host_without_site_url_is_a_warning(settings):
    settings.ALLOWED_HOSTS = ["*"]
    assert ids(settings) == ["khaime.W006"]
    settings.DEBUG = False
    assert ids(settings) == ["khaime.W005", "khaime.W006"]
    assert ids(settings, SITE_URL="https://shop.example") == []


# -- the URLs -------------------------------------------------------------------------------------

urlpatterns_without_the_app: list = []
urlpatterns_with_other_urls = [path("admin/", include("django.contrib.auth.urls"))]
urlpatterns_with_the_app = [path("pay/", include("khaime_django.urls", namespace="pay"))]


def test_installed_urls_pass():
    assert check_khaime_urls() == []


@pytest.mark.parametrize("urlconf", ["urlpatterns_without_the_app", "urlpatterns_with_other_urls"])
def test_missing_urls_are_an_error_naming_the_include_line(urlconf):
    module = __import__(__name__, fromlist=["x"])
    module.urlpatterns = getattr(module, urlconf)
    try:
        with override_settings(ROOT_URLCONF=__name__):
            [e007] = check_khaime_urls()
            with pytest.raises(SystemCheckError, match=r"khaime\.E007"):
                call_command("check", tags=["khaime"])
    finally:
        del module.urlpatterns
    assert e007.id == "khaime.E007"
    assert "khaime:checkout" in e007.msg and "khaime:webhook" in e007.msg
    assert 'path("payments/", include("khaime_django.urls"))' in e007.hint
    assert __name__ in e007.hint


def test_the_app_under_another_prefix_and_instance_namespace_passes():
    module = __import__(__name__, fromlist=["x"])
    module.urlpatterns = urlpatterns_with_the_app
    try:
        with override_settings(ROOT_URLCONF=__name__):
            assert check_khaime_urls() == []
    finally:
        del module.urlpatterns


# -- the documentation ----------------------------------------------------------------------------


def test_every_check_id_is_documented_with_its_fix():
    source = Path(checks.__file__).read_text()
    check_ids = set(re.findall(r'id="(khaime\.[EW]\d{3})"', source))
    assert len(check_ids) >= 14
    page = (DOCS / "troubleshooting.md").read_text()
    undocumented = sorted(check_id for check_id in check_ids if f"`{check_id}`" not in page)
    assert not undocumented, f"add these to docs/troubleshooting.md: {undocumented}"


def test_khaime_not_a_dict_is_an_error(settings):
    settings.KHAIME = "pk_sandbox_abc"
    assert [message.id for message in check_khaime_settings()] == ["khaime.E000"]


def test_manage_py_check_reports_khaime_errors(settings):
    settings.KHAIME = {**settings.KHAIME, "API_KEY": "sk_live_abc"}
    with pytest.raises(SystemCheckError, match=r"khaime\.E002"):
        call_command("check", tags=["khaime"])


# -- a live key beside the emulator's settings ----------------------------------------------------

LIVE = {"API_KEY": "pk_live_abc123", "SITE_URL": "https://shop.example"}


def test_live_key_with_the_emulators_webhook_secret_is_an_error(settings):
    from khaime_django.defaults import EMULATOR_WEBHOOK_SECRET

    settings.DEBUG = False
    assert ids(settings, **LIVE, WEBHOOK_SECRETS=["whsec_real", EMULATOR_WEBHOOK_SECRET]) == ["khaime.E009"]
    assert ids(settings, **LIVE, WEBHOOK_SECRETS=EMULATOR_WEBHOOK_SECRET) == ["khaime.E009"]
    with pytest.raises(SystemCheckError, match=r"khaime\.E009"):
        call_command("check", tags=["khaime"])


@pytest.mark.parametrize(
    "base_url",
    [
        "http://127.0.0.1:8765/api/v1/partner",
        "http://localhost:8765/api/v1/partner",
        "https://localhost/api/v1/partner",
        "http://[::1]:8765/api/v1/partner",
        "http://127.0.0.2:8765/api/v1/partner",
        "http://0.0.0.0:8765/api/v1/partner",
    ],
)
def test_live_key_with_an_emulator_or_loopback_base_url_is_an_error(settings, base_url):
    settings.DEBUG = False
    assert "khaime.E010" in ids(settings, **LIVE, API_BASE_URL=base_url)


def test_sandbox_key_may_use_the_emulator_and_its_secret(settings):
    from khaime_django.defaults import EMULATOR_WEBHOOK_SECRET

    assert (
        ids(settings, API_BASE_URL="http://127.0.0.1:8765/api/v1/partner", WEBHOOK_SECRETS=[EMULATOR_WEBHOOK_SECRET])
        == []
    )
