"""Values shared by the Django settings (``conf.py``) and the emulator, defined once.

Standard library only and free of Django: the emulator (and its pytest plugin, loaded in every
project that installs khaime-django) imports this module without Django configured.
"""

from __future__ import annotations

# Host names that mean "this machine" (``urlsplit(...).hostname`` drops IPv6 brackets).
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})

# Where the emulator listens when no port is given, and the path of its Partner API.
EMULATOR_PORT = 8765
PARTNER_API_PATH = "/api/v1/partner"

# Where `manage.py khaime_emulator` delivers webhooks when KHAIME["EMULATOR_WEBHOOK_URL"] is unset.
EMULATOR_WEBHOOK_URL = "http://127.0.0.1:8000/payments/webhook/"

# The secret the emulator signs webhooks with when none is configured.
EMULATOR_WEBHOOK_SECRET = "whsec_emulator"  # noqa: S105 - a published test value, useless outside the emulator
