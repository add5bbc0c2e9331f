"""The demo site's URLs plus the naive integration's checkout and a no-op webhook floor."""

from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from benchmarks.naive.views import naive_checkout
from demo_project.urls import urlpatterns as demo_urlpatterns


@csrf_exempt
def noop_webhook(request):
    """Answers like the webhook view and does nothing: what Django's request cycle costs."""
    return JsonResponse({"received": True, "outcome": "noop"})


urlpatterns = [
    path("bench/naive/checkout/", naive_checkout, name="naive_checkout"),
    path("bench/noop-webhook/", noop_webhook, name="noop_webhook"),
    *demo_urlpatterns,
]
