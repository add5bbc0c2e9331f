from django.db import models


class NaiveOrder(models.Model):
    # Unique: a merchant looks orders up by Khaime's session id when the buyer returns.
    session_id = models.CharField(max_length=255, unique=True)
    payment_url = models.URLField(max_length=2048)
    amount = models.PositiveBigIntegerField()
    currency = models.CharField(max_length=3)
    email = models.EmailField()
    status = models.CharField(max_length=16, default="pending")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.session_id} {self.amount} {self.currency} ({self.status})"
