"""Take payments in Django through Khaime's hosted checkout."""

__version__ = "0.2.0"
