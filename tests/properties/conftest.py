"""Hypothesis profiles and the fixtures every state machine under tests/properties/ shares.

Profiles (pick one with ``KHAIME_HYPOTHESIS_PROFILE``; ``make fuzz`` sets ``fuzz``):

- ``ci`` (default, what ``make test`` runs): few examples, derandomized, so the suite is fast
  and the same on every run;
- ``fuzz``: many more examples from a random seed, for ``make fuzz`` (also on PostgreSQL);
- ``dev``: a middle ground while working on a machine.

None of them keeps a Hypothesis example database (``database=None``): nothing is written to
``.hypothesis/`` in the repository, and a failure is reproduced from the printed minimal
sequence (or ``@reproduce_failure``) instead of from a local cache.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

# Each example runs a few HTTP requests against the real views and the test database; Hypothesis'
# default 200 ms deadline would make slow CI machines flaky without finding anything.
_COMMON = {
    "database": None,
    "deadline": None,
    "print_blob": True,
    # The machines get their world (client, Khaime stub) from function-scoped fixtures on purpose:
    # each example isolates itself with a savepoint it rolls back (scaffolding.ExampleIsolation).
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
}

settings.register_profile(
    "ci",
    max_examples=20,
    stateful_step_count=16,
    derandomize=True,
    **_COMMON,
)
settings.register_profile("dev", max_examples=60, stateful_step_count=30, **_COMMON)
settings.register_profile("fuzz", max_examples=400, stateful_step_count=40, **_COMMON)

#: The profile the machines and fuzz tests run with (tests use ``settings.get_profile(PROFILE)``
#: explicitly, so loading it never changes Hypothesis' defaults for the rest of the suite).
PROFILE = os.environ.get("KHAIME_HYPOTHESIS_PROFILE", "ci")


@pytest.fixture
def hypothesis_settings() -> settings:
    return settings.get_profile(PROFILE)


@pytest.fixture
def property_settings(settings):
    """Django settings for the machines: every return-page visit asks Khaime (no throttle)."""
    settings.KHAIME = {**settings.KHAIME, "STATUS_REFRESH_INTERVAL": 0}
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return settings


@pytest.fixture
def world_env(db, client, property_settings, khaime_api):
    """What a World needs from pytest: a web client, a logged-in admin client, Khaime's HTTP
    side (``responses``, answered from the World's model of Khaime), signals and a clock."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    from .scaffolding import Clock, Env, KhaimeModel, SignalCounter

    admin = get_user_model().objects.create_superuser("admin", "admin@example.com", "admin")
    admin_client = Client()
    admin_client.force_login(admin)
    khaime = KhaimeModel()
    khaime.install(khaime_api)
    with Clock() as clock, SignalCounter() as signals:
        yield Env(client=client, admin_client=admin_client, khaime=khaime, signals=signals, clock=clock)
