"""The new project's URLs (replaces startproject's urls.py): admin, the app at payments/, and a
product page with a buy button."""

from django.contrib import admin
from django.shortcuts import render
from django.urls import include, path


def product(request):
    return render(request, "product.html")


urlpatterns = [
    path("admin/", admin.site.urls),
    path("payments/", include("khaime_django.urls")),
    path("product/", product, name="product"),
]
