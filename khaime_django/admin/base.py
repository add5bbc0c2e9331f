"""What the admin modules share: the read-only inline every history and ledger list uses, the
body of the "Refresh from Khaime" actions (sessions, subscriptions), and how a search box knows a
pasted payment session reference (sessions, webhook inbox)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from ..exceptions import KhaimeError

#: Rows a "Refresh from Khaime" action asks Khaime about at most per run. One request each, each up
#: to TIMEOUT with retries: a whole-table selection would hold the admin request for minutes and
#: spend the hourly budget. khaime_sync is the tool for bulk reconciliation.
REFRESH_ACTION_LIMIT = 50


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


def refresh_selected(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    candidates: QuerySet,
    refresh: Callable[[Any], bool],
    *,
    label: Callable[[Any], object],
    too_many: Promise,
    changed: Promise,
) -> None:
    """Refresh the first ``REFRESH_ACTION_LIMIT`` of ``candidates`` (newest first) from Khaime and
    tell the operator how it went. ``refresh(row)`` asks Khaime and answers whether the status
    changed; ``label(row)`` names a row that could not be checked; ``too_many`` says that rows were
    left out (``%(n)d``, the limit); ``changed`` counts the changed rows (an ``ngettext_lazy``
    with number ``"n"``)."""
    if candidates[REFRESH_ACTION_LIMIT:].exists():
        model_admin.message_user(request, too_many % {"n": REFRESH_ACTION_LIMIT}, messages.WARNING)
    changed_count = unchanged = failed = 0
    for row in candidates[:REFRESH_ACTION_LIMIT]:
        try:
            status_changed = refresh(row)
        except KhaimeError as error:
            failed += 1
            model_admin.message_user(
                request, _("%(ref)s: %(error)s") % {"ref": label(row), "error": error}, messages.WARNING
            )
            continue
        if status_changed:
            changed_count += 1
        else:
            unchanged += 1
    model_admin.message_user(
        request,
        changed % {"n": changed_count}
        + "; "
        + _("%(n)d unchanged; %(f)d could not be checked.") % {"n": unchanged, "f": failed},
        messages.SUCCESS if not failed else messages.WARNING,
    )


def pasted_reference(term: str) -> uuid.UUID | None:
    """``term`` as a payment session reference if it is a whole one (a UUID), else None."""
    try:
        return uuid.UUID(term)
    except ValueError:
        return None
