"""A live session must send the buyer back over https to a public host (khaime_django.return_urls)."""

import logging

import pytest

from khaime_django.exceptions import KhaimeConfigurationError
from khaime_django.return_urls import UnsafeReturnURL, is_loopback_host, require_safe_return_urls, return_url_problem

SUCCESS = "https://shop.example/payments/sessions/0/success/"
CANCEL = "https://shop.example/payments/sessions/0/cancel/"


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "LOCALHOST",
        "shop.localhost",
        "localhost.",
        "127.0.0.1",
        "127.1.2.3",
        "::1",
        "[::1]",
        "0.0.0.0",  # noqa: S104 - a host name under test; nothing binds to it
        "::",
        "",
        None,
    ],
)
def test_loopback_hosts(host):
    assert is_loopback_host(host)


@pytest.mark.parametrize("host", ["shop.example", "203.0.113.5", "2001:db8::1", "localhost.shop.example", "10.0.0.1"])
def test_public_or_private_network_hosts_are_not_loopback(host):
    assert not is_loopback_host(host)


def test_live_https_public_urls_pass(caplog):
    with caplog.at_level(logging.ERROR):
        require_safe_return_urls("live", SUCCESS, CANCEL)
    assert caplog.records == []
    assert return_url_problem(SUCCESS) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://shop.example/payments/sessions/0/success/",  # a TLS proxy without SECURE_PROXY_SSL_HEADER
        "https://127.0.0.1:8000/payments/sessions/0/success/",  # a proxy rewriting Host
        "https://localhost/payments/sessions/0/success/",
        "https://[::1]/payments/sessions/0/success/",
        "http://127.0.0.1:8000/payments/sessions/0/success/",
        "/payments/sessions/0/success/",
    ],
)
def test_live_session_with_an_unsafe_return_url_is_refused_and_logged(caplog, url):
    with caplog.at_level(logging.ERROR, logger="khaime_django.return_urls"):
        with pytest.raises(UnsafeReturnURL) as raised:
            require_safe_return_urls("live", url, CANCEL)
    message = str(raised.value)
    assert message.startswith("Refused to create a live Khaime session: " + url)
    assert "KHAIME['SITE_URL']" in message and "SECURE_PROXY_SSL_HEADER" in message
    assert "USE_X_FORWARDED_HOST" in message
    assert isinstance(raised.value, KhaimeConfigurationError)
    [record] = caplog.records
    assert record.levelno == logging.ERROR and record.getMessage() == message


def test_every_unsafe_url_is_named():
    with pytest.raises(UnsafeReturnURL) as raised:
        require_safe_return_urls("live", "http://a.example/s/", "https://localhost/c/")
    assert "http://a.example/s/ is not https" in str(raised.value)
    assert "https://localhost/c/ points at this machine (localhost)" in str(raised.value)


def test_sandbox_sessions_may_return_to_local_development(caplog):
    with caplog.at_level(logging.ERROR):
        require_safe_return_urls("sandbox", "http://127.0.0.1:8000/s/", "http://localhost:8000/c/")
    assert caplog.records == []
