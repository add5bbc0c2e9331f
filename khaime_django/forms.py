from django import forms
from django.utils.translation import gettext_lazy as _


class CheckoutForm(forms.Form):
    """What the buy button posts: the signed price and, for guests, an email."""

    token = forms.CharField(widget=forms.HiddenInput)
    email = forms.EmailField(label=_("Email"), required=False, max_length=254)
