from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class KhaimeConfig(AppConfig):
    name = "khaime_django"
    label = "khaime_django"
    verbose_name = _("Khaime payments")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import checks  # noqa: F401  (registers the system checks)
