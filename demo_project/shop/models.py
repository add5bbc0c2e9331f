from django.db import models
from django.urls import reverse

from khaime_django.money import format_money


class Product(models.Model):
    """What the demo shop sells. Prices are integers in the currency's minor unit, like Khaime's."""

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    amount = models.PositiveIntegerField(help_text="Minor units: 5000 is $50.00, 5000 is ¥5,000.")
    currency = models.CharField(max_length=3, default="USD")
    subscription_frequency_key = models.CharField(max_length=32, blank=True, help_text="monthly, yearly, ...")
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["position", "name"]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("shop:product", kwargs={"slug": self.slug})

    @property
    def price(self):
        return format_money(self.amount, self.currency)

    @property
    def checkout_metadata(self):
        """Sent to Khaime with the session and echoed back in webhooks."""
        return {"product_slug": self.slug}
