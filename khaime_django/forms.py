from django import forms
from django.utils.translation import gettext_lazy as _


class CheckoutForm(forms.Form):
    """What the buy button posts: the signed price and, for guests, an email."""

    # Not required here: a missing token is refused by CheckoutView.get_purchase with its own
    # message, and a subclass that prices from its own models need not post one at all.
    token = forms.CharField(widget=forms.HiddenInput, required=False)
    email = forms.EmailField(label=_("Email"), required=False, max_length=254)
