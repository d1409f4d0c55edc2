import io
import zipfile

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from rest_framework.exceptions import ValidationError

from huntaze.read_only_admin import ReadOnlyAdminMixin
from usage.apis import month_parse
from usage.exports import CONTENT_TYPES, report_file
from usage.models import MonthlyReport, UsageRecord
from usage.selectors import monthly_cost_report


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The ledger is append-only: readable here, never edited."""

    deletable = False
    change_list_template = "admin/usage/usagerecord/change_list.html"
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
    list_filter = [
        "status",
        "tier",
        "category",
        "category_source",
        "router_artifact",
        "service_tier",
        "sandbox",
        "qa",
    ]
    list_select_related = ["api_key"]
    search_fields = ["request_id", "end_user"]
    date_hierarchy = "created_at"
    show_full_result_count = False

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("cost-report/", view(self.cost_report_view), name="usage_cost_report"),
            path(
                "cost-report/<str:month>.<str:fmt>",
                view(self.cost_report_download),
                name="usage_cost_report_download",
            ),
            *super().get_urls(),
        ]

    def _month(self, request: HttpRequest, month: str | None) -> tuple[int, int]:
        now = timezone.now()
        try:
            return month_parse(month) if month else (now.year, now.month)
        except ValidationError:
            self.message_user(request, f"Unknown month {month!r}: showing this month.", "warning")
            return now.year, now.month

    def cost_report_view(self, request: HttpRequest) -> TemplateResponse:
        year, month = self._month(request, request.GET.get("month"))
        report = monthly_cost_report(year=year, month=month, now=timezone.now())
        chart = {
            "labels": [line.key for line in report.by_category],
            "cost_usd": [str(line.cost_usd) for line in report.by_category],
            "baseline_cost_usd": [str(line.baseline_cost_usd) for line in report.by_category],
        }
        sections = [
            ("By category", report.by_category),
            ("By model", report.by_model),
            ("By tier", report.by_tier),
            ("By API key", report.by_api_key),
            ("Top end users", report.top_end_users),
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": f"Cost report {report.label}",
            "opts": self.model._meta,
            "report": report,
            "sections": sections,
            "chart": chart,
            "month": report.label,
            "stored": MonthlyReport.objects.filter(year=year, month=month),
        }
        return TemplateResponse(request, "admin/usage/cost_report.html", context)

    def cost_report_download(self, request: HttpRequest, month: str, fmt: str) -> HttpResponse:
        year, month_number = self._month(request, month)
        if fmt not in ("csv", "xlsx"):
            fmt = "csv"
        report = monthly_cost_report(year=year, month=month_number, now=timezone.now())
        content, content_type, filename = report_file(report, fmt=fmt)
        response = HttpResponse(content, content_type=content_type)
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response


@admin.register(MonthlyReport)
class MonthlyReportAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Stored month-end reports, written by the beat task; downloadable, never edited."""

    list_display = ["__str__", "year", "month", "format", "size_bytes", "sha256", "download"]
    list_filter = ["format", "year"]
    fields = ["year", "month", "format", "size_bytes", "sha256", "created_at"]
    readonly_fields = fields
    actions = ["download_selected"]

    @admin.display(description="file")
    def download(self, obj: MonthlyReport) -> str:
        url = reverse("admin:usage_monthlyreport_file", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, obj.filename)

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<int:pk>/file", view(self.file_view), name="usage_monthlyreport_file"),
            *super().get_urls(),
        ]

    def file_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        return self._file_response(MonthlyReport.objects.get(pk=pk))

    @staticmethod
    def _file_response(report: MonthlyReport) -> HttpResponse:
        content_type = CONTENT_TYPES[report.format]
        response = HttpResponse(bytes(report.content), content_type=content_type)
        response["Content-Disposition"] = f'attachment; filename="{report.filename}"'
        response["X-Checksum-SHA256"] = report.sha256
        return response

    @admin.action(description="Download selected reports (one file, or a zip with checksums)")
    def download_selected(self, request: HttpRequest, queryset) -> HttpResponse | None:
        reports = list(queryset)
        if len(reports) == 1:
            return self._file_response(reports[0])
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
            for report in reports:
                archive.writestr(report.filename, bytes(report.content))
            sums = "".join(f"{r.sha256}  {r.filename}\n" for r in reports)
            archive.writestr("SHA256SUMS", sums)
        self.message_user(request, f"{len(reports)} reports zipped.", messages.SUCCESS)
        response = HttpResponse(out.getvalue(), content_type="application/zip")
        response["Content-Disposition"] = 'attachment; filename="huntaze-cost-reports.zip"'
        return response


from usage import reconciliation_admin  # noqa: E402, F401 - registers the reconciliation admin
