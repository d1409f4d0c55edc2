"""Admin for the price book: every model's rows with their history, new rows (a price change
is a new row), billed rows read-only, import and export as JSON or CSV."""

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from routing.models import ModelProfile
from routing.policy_versions import policy_version_create
from routing.price_book import price_row
from routing.price_book_io import (
    FILE_COLUMNS,
    FORMATS,
    PriceBookImportError,
    price_book_export,
    price_book_import,
)
from routing.price_models import ModelPrice
from routing.pricing import PRICE_COLUMNS, price_on


def current_prices_text(profile: ModelProfile) -> str:
    """The row in force today, as "in / cached / out" (or a warning when there is none)."""
    rows = [price_row(r) for r in profile.prices.all()]
    if not rows:
        return "no prices: add a price book row"
    price = price_on(rows, timezone.now().date())
    prices = (price.input_per_mtok_usd, price.cached_input_per_mtok_usd, price.output_per_mtok_usd)
    return " / ".join(str(p) for p in prices)


def _billed(obj: ModelPrice | None) -> bool:
    return obj is not None and obj.pk is not None and obj.usage_records.exists()


class ModelPriceInline(admin.TabularInline):
    """New price rows from the model's page; existing ones are changed in the price book."""

    model = ModelPrice
    extra = 0
    fields = ["effective_from", "input_per_mtok_usd", "cached_input_per_mtok_usd",
              "output_per_mtok_usd", "note"]  # fmt: skip
    show_change_link = True

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # rows are changed (when unbilled) on their own page

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class PriceBookImportForm(forms.Form):
    file = forms.FileField(help_text="A JSON or CSV price book (the export's format).")


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    change_list_template = "admin/routing/modelprice/change_list.html"
    list_display = ["model", "effective_from", *PRICE_COLUMNS, "billed"]
    list_filter = ["model"]
    search_fields = ["model__name", "note"]
    date_hierarchy = "effective_from"
    list_select_related = ["model"]
    readonly_fields = ["created_at"]

    @admin.display(boolean=True, description="billed")
    def billed(self, obj: ModelPrice) -> bool:
        return _billed(obj)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return super().has_change_permission(request, obj) and not _billed(obj)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return super().has_delete_permission(request, obj) and not _billed(obj)

    def save_model(self, request: HttpRequest, obj: ModelPrice, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        verb = "corrected" if change else "added"
        policy_version_create(
            actor=request.user.get_username(), comment=f"price book: {verb} {obj}"
        )

    def delete_model(self, request: HttpRequest, obj: ModelPrice) -> None:
        super().delete_model(request, obj)
        policy_version_create(
            actor=request.user.get_username(), comment=f"price book: deleted {obj}"
        )

    def get_actions(self, request: HttpRequest):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # one at a time, so a billed row is never swept
        return actions

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("import/", view(self.import_view), name="routing_modelprice_import"),
            path("export/", view(self.export_view), name="routing_modelprice_export"),
            *super().get_urls(),
        ]

    def export_view(self, request: HttpRequest) -> HttpResponse:
        fmt = request.GET.get("format", "json")
        if fmt not in FORMATS:
            return HttpResponse(f"format must be one of {', '.join(FORMATS)}", status=400)
        content_type = "application/json" if fmt == "json" else "text/csv"
        response = HttpResponse(
            price_book_export(fmt), content_type=f"{content_type}; charset=utf-8"
        )
        response["Content-Disposition"] = f'attachment; filename="price-book.{fmt}"'
        return response

    def import_view(self, request: HttpRequest):
        if not self.has_add_permission(request):
            return HttpResponse("Adding price rows is not allowed for this user.", status=403)
        form = PriceBookImportForm(request.POST or None, request.FILES or None)
        errors: list[str] = []
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            fmt = "csv" if upload.name.lower().endswith(".csv") else "json"
            try:
                content = upload.read().decode("utf-8-sig")
                result = price_book_import(content, fmt, actor=request.user.get_username())
            except UnicodeDecodeError:
                errors = ["the file is not UTF-8 text"]
            except PriceBookImportError as exc:
                errors = exc.errors
            else:
                self.message_user(
                    request,
                    f"Price book imported: {result.added} row(s) added, {result.corrected} "
                    f"corrected, {result.unchanged} unchanged.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(reverse("admin:routing_modelprice_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "title": "Import the price book (JSON or CSV)",
            "opts": self.model._meta,
            "form": form,
            "errors": errors,
            "columns": FILE_COLUMNS,
        }
        return TemplateResponse(request, "admin/routing/modelprice/import.html", context)
