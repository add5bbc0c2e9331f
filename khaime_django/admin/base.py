"""What the admin modules share: the read-only inline every history and ledger list uses."""

from __future__ import annotations

from django.contrib import admin


class ReadOnlyInline(admin.TabularInline):
    """Rows shown beside their parent, never added, edited or deleted there: status histories,
    payments and refunds change only through khaime-django's own paths."""

    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
