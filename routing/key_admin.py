"""Admin for API keys and what admission keeps of them: budget periods, in-flight requests."""

from django.contrib import admin, messages
from django.http import HttpRequest
from django.utils import timezone

from huntaze.read_only_admin import ReadOnlyAdminMixin
from routing.api_keys import api_key_create, api_key_revoke
from routing.gateway.admission import budget_period_resync
from routing.inflight import QUARANTINE_KEY, inflight_quarantined_count
from routing.models import ApiKey
from routing.request_state_models import BudgetPeriod, InFlightRequest


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "prefix",
        "monthly_budget_usd",
        "rate_limit_per_minute",
        "created_at",
        "revoked_at",
    ]
    fields = ["name", "monthly_budget_usd", "budget_alert_percent", "rate_limit_per_minute"]
    actions = ["revoke"]

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        return ["name"] if obj else []

    def save_model(self, request: HttpRequest, obj: ApiKey, form, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            if "monthly_budget_usd" in form.changed_data and obj.monthly_budget_usd is not None:
                budget_period_resync(api_key=obj, now=timezone.now())
            return
        created, plaintext = api_key_create(name=form.cleaned_data["name"])
        for field in ("monthly_budget_usd", "budget_alert_percent", "rate_limit_per_minute"):
            setattr(created, field, form.cleaned_data[field])
        created.save()
        obj.pk = created.pk
        self.message_user(
            request,
            f"API key for '{created.name}': {plaintext} (shown once; store it now).",
            messages.SUCCESS,
        )

    @admin.action(description="Revoke selected keys")
    def revoke(self, request: HttpRequest, queryset) -> None:
        for api_key in queryset:
            api_key_revoke(api_key=api_key)
        self.message_user(request, f"Revoked {queryset.count()} key(s).", messages.SUCCESS)


@admin.register(BudgetPeriod)
class BudgetPeriodAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Each key's month: what is spent, what in-flight requests reserved, and the alert."""

    list_display = ["api_key", "month", "spent_usd", "reserved_usd", "limit", "alerted_at"]
    list_select_related = ["api_key"]
    list_filter = ["month"]

    @admin.display(description="monthly budget")
    def limit(self, obj: BudgetPeriod):
        return obj.api_key.monthly_budget_usd


class QuarantinedFilter(admin.SimpleListFilter):
    title = "quarantined"
    parameter_name = "quarantined"

    def lookups(self, request, model_admin):
        return [("yes", "quarantined (the sweep cannot write it)"), ("no", "in flight")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(quarantined_at__isnull=self.value() == "no")
        return queryset


@admin.register(InFlightRequest)
class InFlightRequestAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Requests admitted and not yet in the ledger, and those the in-flight sweep could not
    record (quarantined: kept for a person to look at, skipped by the sweep)."""

    list_display = [
        "request_id",
        "api_key",
        "deadline_at",
        "reserved_usd",
        "quarantined_at",
        "quarantine_reason",
    ]
    list_select_related = ["api_key"]
    list_filter = [QuarantinedFilter]
    search_fields = ["request_id"]
    actions = ["sweep_again"]

    def changelist_view(self, request: HttpRequest, extra_context=None):
        in_redis = inflight_quarantined_count()
        if in_redis:
            self.message_user(
                request,
                f"{in_redis} lost request(s) kept in Redis could not be recorded either "
                f"(Redis hash {QUARANTINE_KEY}).",
                messages.WARNING,
            )
        return super().changelist_view(request, extra_context)

    @admin.action(description="Let the sweep try the selected quarantined records again")
    def sweep_again(self, request: HttpRequest, queryset) -> None:
        count = queryset.exclude(quarantined_at=None).update(
            quarantined_at=None, quarantine_reason=""
        )
        self.message_user(request, f"{count} record(s) back in the sweep's queue.")
