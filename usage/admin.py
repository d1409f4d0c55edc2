from django.contrib import admin
from django.http import HttpRequest

from usage.models import UsageRecord


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    """The ledger is append-only: readable here, never edited."""

    list_display = [
        "created_at",
        "request_id",
        "api_key",
        "category",
        "tier",
        "model",
        "reason_code",
        "status",
        "input_tokens",
        "cached_tokens",
        "output_tokens",
        "cost_usd",
        "baseline_cost_usd",
        "latency_ms",
    ]
    list_filter = ["status", "tier", "category", "sandbox"]
    list_select_related = ["api_key"]
    search_fields = ["request_id", "end_user"]
    date_hierarchy = "created_at"
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
