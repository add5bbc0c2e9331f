"""An offline, stateful emulator of the Khaime Partner API, with signed webhooks and faults.

    from khaime_django.emulator import Emulator
    with Emulator(webhook_url="http://127.0.0.1:8000/payments/webhook/") as emu:
        KHAIME["API_BASE_URL"] = emu.api_base_url

Standard library only: it is imported by pytest in every project that installs khaime-django.
"""

from .config import EmulatorConfig, InvalidConfig
from .events import khaime_sign
from .refund_actions import REFUND_FAULTS, RefundRefused
from .server import Emulator
from .sessions import TransitionNotAllowed, UnknownRecord, UnknownSession

__all__ = [
    "REFUND_FAULTS",
    "Emulator",
    "EmulatorConfig",
    "InvalidConfig",
    "RefundRefused",
    "TransitionNotAllowed",
    "UnknownRecord",
    "UnknownSession",
    "khaime_sign",
]
