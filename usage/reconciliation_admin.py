"""Admin for reconciliation with the provider's bill: each day's difference per model (read
only, filterable), the provider's figures, and the upload of a provider's bill as CSV."""

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from usage.provider_export import CSV_OPTIONAL, CSV_REQUIRED, ProviderUsageImportError
from usage.reconciliation import provider_usage_import
from usage.reconciliation_models import ProviderUsage, Reconciliation, ReconciliationStatus


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Reconciliation)
class ReconciliationAdmin(ReadOnlyAdmin):
    """The ledger against the provider, per UTC day and model; differences are provider
    minus ledger."""

    change_list_template = "admin/usage/reconciliation/change_list.html"
    list_display = [
        "day",
        "model",
        "status_badge",
        "max_difference_percent",
        "differing",
        "requests_difference",
        "input_tokens_difference",
        "cached_tokens_difference",
        "cache_write_tokens_difference",
        "output_tokens_difference",
        "ledger_cost_usd",
        "provider_cost_usd",
        "cost_difference_usd",
        "reconciled_at",
    ]
    list_filter = ["status", "model", "day"]
    search_fields = ["model"]
    date_hierarchy = "day"

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Reconciliation) -> str:
        colour = "#2e7d32" if obj.status == ReconciliationStatus.OK else "#ba2121"
        return format_html(
            '<strong style="color: {}">{}</strong>', colour, obj.get_status_display()
        )


class ProviderUsageImportForm(forms.Form):
    file = forms.FileField(
        help_text=f"CSV, UTF-8, with a header: {', '.join(CSV_REQUIRED)} "
        f"(optional: {', '.join(CSV_OPTIONAL)}). A bad row imports nothing."
    )


@admin.register(ProviderUsage)
class ProviderUsageAdmin(ReadOnlyAdmin):
    """What providers report they billed; written by the export fetch and the CSV import."""

    change_list_template = "admin/usage/providerusage/change_list.html"
    list_display = [
        "day",
        "model",
        "provider",
        "requests",
        "input_tokens",
        "cached_tokens",
        "cache_write_tokens",
        "output_tokens",
        "cost_usd",
        "source",
        "imported_at",
    ]
    list_filter = ["source", "provider", "model"]
    date_hierarchy = "day"

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("import/", view(self.import_view), name="usage_providerusage_import"),
            *super().get_urls(),
        ]

    def import_view(self, request: HttpRequest):
        form = ProviderUsageImportForm(request.POST or None, request.FILES or None)
        errors: list[str] = []
        if request.method == "POST" and form.is_valid():
            try:
                content = form.cleaned_data["file"].read().decode("utf-8")
                result = provider_usage_import(content=content, now=timezone.now())
            except UnicodeDecodeError:
                errors = ["the file is not UTF-8 text"]
            except ProviderUsageImportError as exc:
                errors = exc.errors
            else:
                level = messages.WARNING if result.mismatches else messages.SUCCESS
                self.message_user(
                    request,
                    f"Imported {result.rows} row(s), {result.start} to {result.end}: "
                    f"{result.mismatches} day/model(s) differ from the ledger.",
                    level,
                )
                return HttpResponseRedirect(reverse("admin:usage_reconciliation_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "title": "Import a provider's bill (CSV)",
            "opts": self.model._meta,
            "form": form,
            "errors": errors,
        }
        return TemplateResponse(request, "admin/usage/providerusage/import.html", context)
