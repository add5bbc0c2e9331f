from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("payments/", include("khaime_django.urls")),
    path("", include("demo_project.shop.urls")),
]

# A dropped database connection anywhere (a view, or the session saved after it) is a 503 "try again".
handler500 = "demo_project.shop.views.server_error"
