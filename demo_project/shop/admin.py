from django.contrib import admin

from .models import Product


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ("name", "price", "currency", "subscription_frequency_key", "position")
    prepopulated_fields = {"slug": ("name",)}
