"""The admin of rows that only services write (the ledger, audit trails, in-flight state)."""

from django.http import HttpRequest


class ReadOnlyAdminMixin:
    """Rows are shown, never added or changed in admin; `deletable = False` takes deleting
    away too (the append-only ledger and what it is judged by)."""

    deletable = True

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return self.deletable and super().has_delete_permission(request, obj)
