"""Admin for batch jobs: read-only, with each provider batch's state and each item's outcome."""

from django.contrib import admin
from django.db.models import Count, Q
from django.http import HttpRequest

from huntaze.read_only_admin import ReadOnlyAdminMixin
from routing.batch_models import BatchItem, BatchItemStatus, BatchJob, ProviderBatch


class ReadOnlyInline(ReadOnlyAdminMixin, admin.TabularInline):
    extra = 0
    can_delete = False


class ProviderBatchInline(ReadOnlyInline):
    model = ProviderBatch
    fields = [
        "model", "state", "provider_status", "provider_batch_id", "submit_attempts",
        "poll_count", "last_error", "next_action_at", "submitted_at", "collected_at",
    ]  # fmt: skip
    readonly_fields = fields


class BatchItemInline(ReadOnlyInline):
    model = BatchItem
    fields = [
        "index", "custom_id", "status", "request_id", "input_tokens", "output_tokens",
        "cost_usd", "error_code", "error_message",
    ]  # fmt: skip
    readonly_fields = fields


@admin.register(BatchJob)
class BatchJobAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "public_id", "api_key", "status", "requests", "succeeded", "failed", "created_at",
        "completed_at",
    ]  # fmt: skip
    list_filter = ["status"]
    list_select_related = ["api_key"]
    search_fields = ["public_id"]
    inlines = [ProviderBatchInline, BatchItemInline]
    readonly_fields = ["public_id", "api_key", "status", "metadata", "created_at", "completed_at"]

    def get_queryset(self, request: HttpRequest):
        return (
            super()
            .get_queryset(request)
            .annotate(
                n_items=Count("items"),
                n_succeeded=Count("items", filter=Q(items__status=BatchItemStatus.SUCCEEDED)),
                n_failed=Count(
                    "items",
                    filter=~Q(
                        items__status__in=[BatchItemStatus.PENDING, BatchItemStatus.SUCCEEDED]
                    ),
                ),
            )
        )

    @admin.display(description="requests", ordering="n_items")
    def requests(self, obj: BatchJob) -> int:
        return obj.n_items

    @admin.display(description="succeeded")
    def succeeded(self, obj: BatchJob) -> int:
        return obj.n_succeeded

    @admin.display(description="failed, expired or cancelled")
    def failed(self, obj: BatchJob) -> int:
        return obj.n_failed
