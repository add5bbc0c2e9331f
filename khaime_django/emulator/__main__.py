"""``python -m khaime_django.emulator --port 8765 --webhook-url URL --webhook-secret whsec_...``"""

import sys

from .cli import main

sys.exit(main())
