"""The demo site's URLs plus the naive integration's checkout."""

from django.urls import path

from benchmarks.naive.views import naive_checkout
from demo_project.urls import urlpatterns as demo_urlpatterns

urlpatterns = [
    path("bench/naive/checkout/", naive_checkout, name="naive_checkout"),
    *demo_urlpatterns,
]
