from khaime_django.conf import khaime_settings


def khaime_mode(request):
    """Lets every page say when payments go to the offline emulator."""
    return {"khaime_emulated": khaime_settings.api_is_loopback}
