from django.urls import path

from . import views, webhook_views

app_name = "khaime"

urlpatterns = [
    path("checkout/", views.CheckoutView.as_view(), name="checkout"),
    path("sessions/<uuid:reference>/success/", views.SuccessView.as_view(), name="success"),
    path("sessions/<uuid:reference>/cancel/", views.CancelView.as_view(), name="cancel"),
    path("sessions/<uuid:reference>/status/", views.StatusView.as_view(), name="status"),
    path("webhook/", webhook_views.WebhookView.as_view(), name="webhook"),
]
