from django.shortcuts import get_object_or_404, render

from khaime_django.models import PaymentSession

from .models import Product


def product_list(request):
    return render(request, "shop/product_list.html", {"products": Product.objects.all()})


def product_detail(request, slug):
    return render(request, "shop/product_detail.html", {"product": get_object_or_404(Product, slug=slug)})


def order_status(request, reference):
    """The merchant's own page for one payment attempt: what we stored and how it got there."""
    session = get_object_or_404(PaymentSession, reference=reference)
    return render(request, "shop/order_status.html", {"session": session, "history": session.status_changes.all()})
