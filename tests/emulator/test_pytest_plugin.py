"""The ``khaime_emulator`` pytest plugin, run the way a merchant's suite runs it: in a pytest
subprocess, with and without pytest-django."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PLUGIN = "khaime_django.emulator.pytest_plugin"


def run_pytest(directory: Path, *args: str) -> subprocess.CompletedProcess:
    """pytest on ``directory`` with only the plugins named in ``args`` (``-p ...``)."""
    (directory / "pytest.ini").write_text("[pytest]\n")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(directory), str(REPO_ROOT)]),
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            *args,
            str(directory),
        ],
        check=False,
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def write(path: Path, source: str) -> None:
    path.write_text(textwrap.dedent(source))


def test_plugin_module_imports_nothing_from_django():
    code = f"import sys, {PLUGIN}; print(sorted(m for m in sys.modules if m.split('.')[0] == 'django'))"

    result = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_fixture_gives_each_test_a_reset_emulator_on_one_shared_server(tmp_path):
    write(
        tmp_path / "test_merchant.py",
        """
        import requests

        SEEN = []

        def create_session(emulator):
            http = requests.Session()
            http.trust_env = False
            return http.post(
                emulator.api_base_url + "/payments/sessions",
                json={"amount": 100, "currency": "USD", "product_name": "Tea", "customer": {"email": "a@b.example"}},
                headers={"X-API-Key": "pk_sandbox_merchant"},
                timeout=5,
            )

        def test_first(khaime_emulator):
            assert create_session(khaime_emulator).status_code == 201
            assert khaime_emulator.config.webhook_retry_delay == 0.05
            khaime_emulator.configure(fee_bps=0)
            SEEN.append(khaime_emulator.base_url)

        def test_second_starts_fresh(khaime_emulator):
            assert khaime_emulator.sessions() == []
            assert khaime_emulator.config.fee_bps == 600
            assert khaime_emulator.base_url == SEEN[0]
        """,
    )

    result = run_pytest(tmp_path, "-p", PLUGIN)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def test_fixture_points_django_settings_and_live_server_webhooks_at_the_emulator(
    tmp_path,
):
    write(
        tmp_path / "merchant_settings.py",
        """
        SECRET_KEY = "plugin-test"
        INSTALLED_APPS = []
        DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
        ROOT_URLCONF = "merchant_urls"
        STATIC_URL = "/static/"
        USE_TZ = True
        KHAIME = {"TIMEOUT": (1, 2), "API_KEY": "pk_live_real_key_not_for_tests"}
        """,
    )
    write(
        tmp_path / "merchant_urls.py",
        """
        from django.http import HttpResponse
        from django.urls import include, path
        from django.views.decorators.csrf import csrf_exempt

        RECEIVED = []

        @csrf_exempt
        def webhook(request):
            RECEIVED.append((request.headers["X-Khaime-Signature"], request.body))
            return HttpResponse("ok")

        urlpatterns = [path("payments/", include(([path("webhook/", webhook, name="webhook")], "khaime")))]
        """,
    )
    write(
        tmp_path / "test_merchant_django.py",
        """
        import requests
        from django.conf import settings as django_settings

        from khaime_django.emulator import khaime_sign
        import merchant_urls

        def test_khaime_settings_point_at_the_emulator(khaime_emulator, settings):
            assert settings.KHAIME == {
                "TIMEOUT": (1, 2),
                "API_KEY": "pk_sandbox_emulator_test_key",
                "API_BASE_URL": khaime_emulator.api_base_url,
                "WEBHOOK_SECRETS": [khaime_emulator.config.webhook_secret],
            }

        def test_settings_are_set_even_without_asking_for_the_settings_fixture(khaime_emulator):
            assert django_settings.KHAIME["API_BASE_URL"] == khaime_emulator.api_base_url

        def test_webhooks_are_delivered_to_the_live_server(khaime_emulator, live_server):
            http = requests.Session()
            http.trust_env = False
            session = http.post(
                django_settings.KHAIME["API_BASE_URL"] + "/payments/sessions",
                json={"amount": 100, "currency": "USD", "product_name": "Tea", "customer": {"email": "a@b.example"}},
                headers={"X-API-Key": django_settings.KHAIME["API_KEY"]},
                timeout=5,
            ).json()["data"]

            khaime_emulator.complete(session["session_id"])
            khaime_emulator.wait_for_deliveries(1)

            (delivery,) = khaime_emulator.deliveries()
            assert delivery["url"] == live_server.url + "/payments/webhook/"
            assert delivery["status_code"] == 200
            signature, body = merchant_urls.RECEIVED[0]
            assert signature == khaime_sign(body, django_settings.KHAIME["WEBHOOK_SECRETS"][0])

        def test_settings_are_restored_after_each_test():
            assert django_settings.KHAIME["API_KEY"] == "pk_live_real_key_not_for_tests"
        """,
    )

    result = run_pytest(tmp_path, "-p", "django", "-p", PLUGIN, "--ds", "merchant_settings")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout
