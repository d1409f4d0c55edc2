"""Admin for shadow evaluation: the verdicts (read-only), quality retained on the decision
matrix, the calibration suggestion on each category's form, and its one-click (confirmed)
application."""

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from huntaze.read_only_admin import ReadOnlyAdminMixin
from routing.calibration import category_threshold_apply
from routing.models import QualityEvaluation, TaskCategory
from routing.quality import percent_label, threshold_label
from routing.quality_selectors import category_calibration, quality_panel


@admin.register(QualityEvaluation)
class QualityEvaluationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Shadow evaluations: read-only, like the ledger they are billed in (rows flagged qa)."""

    deletable = False
    list_display = [
        "created_at",
        "request_id",
        "category",
        "complexity",
        "verdict",
        "verdict_ab",
        "verdict_ba",
        "cheap_model",
        "premium_model",
        "judge_model",
        "extra_cost_usd",
        "sandbox",
    ]
    list_filter = ["verdict", "category", "sandbox"]
    search_fields = ["request_id"]
    date_hierarchy = "created_at"


def _threshold_from(value: str) -> int | None:
    """Parse "never" or 0-10; raise ValueError otherwise."""
    if value == "never":
        return None
    threshold = int(value)
    if not 0 <= threshold <= 10:
        raise ValueError(value)
    return threshold


def page_warnings(request: HttpRequest, warnings: list[str]) -> None:
    """Show these warnings on a page that is being viewed: a POST (an inline save) redirects
    to the page, which shows them then, so they are not queued twice."""
    if request.method != "GET":
        return
    for warning in warnings:
        messages.warning(request, warning)


class QualityAdminMixin:
    """Mixed into TaskCategoryAdmin."""

    def changelist_view(self, request: HttpRequest, extra_context=None):
        panel = quality_panel(now=timezone.now())
        self._quality = {c.category: c for c in panel.categories}
        page_warnings(
            request,
            [
                f"Quality alert: {cat.category} keeps {cat.overall.percent}% of cheap answers at "
                f"least as good as premium (95% CI {cat.overall.low_percent}-"
                f"{cat.overall.high_percent}%, n={cat.overall.n}), below its floor of "
                f"{percent_label(cat.floor_percent)}%."
                for cat in panel.alerts
            ],
        )
        return super().changelist_view(request, extra_context)

    @admin.display(description="quality retained")
    def quality_retained(self, obj: TaskCategory):
        cat = self._quality.get(obj.slug)
        if cat is None or not cat.overall.n:
            return "-"
        r = cat.overall
        text = f"{r.percent}% ({r.low_percent}-{r.high_percent}, n={r.n})"
        if r.below_floor:
            return format_html(
                '<span class="quality-alert" title="below the floor of {}%">{} ⚠ below {}%</span>',
                percent_label(cat.floor_percent),
                text,
                percent_label(cat.floor_percent),
            )
        return text

    def change_view(self, request: HttpRequest, object_id, form_url="", extra_context=None):
        category = self.get_object(request, object_id)
        if category is not None:
            now = timezone.now()
            panel = quality_panel(now=now)
            extra_context = {
                **(extra_context or {}),
                "calibration": category_calibration(category=category, now=now),
                "quality": next((c for c in panel.categories if c.category == category.slug), None),
            }
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self):
        calibrate = self.admin_site.admin_view(self.calibrate_view)
        return [
            path("<int:pk>/calibrate/", calibrate, name="routing_taskcategory_calibrate"),
            *super().get_urls(),
        ]

    def calibrate_view(self, request: HttpRequest, pk: int):
        """GET asks for confirmation; POST (with CSRF) applies the threshold as a version."""
        category = get_object_or_404(TaskCategory, pk=pk)
        back = reverse("admin:routing_taskcategory_change", args=[pk])
        if not request.user.has_perm("routing.change_taskcategory"):
            return HttpResponseRedirect(back)
        source = request.POST if request.method == "POST" else request.GET
        try:
            threshold = _threshold_from(source.get("to", ""))
        except ValueError:
            self.message_user(request, "Choose a threshold from 0 to 10, or never.", messages.ERROR)
            return HttpResponseRedirect(back)
        if request.method == "POST" and source.get("confirm") == "yes":
            version = category_threshold_apply(
                category=category,
                threshold=threshold,
                actor=request.user.get_username(),
                comment=source.get("comment", "")[:500],
            )
            self.message_user(
                request,
                f"{category.slug} now goes premium from {threshold_label(threshold)} "
                f"(policy version {version.pk}).",
                messages.SUCCESS,
            )
            return HttpResponseRedirect(back)
        calibration = category_calibration(category=category, now=timezone.now())
        row = None
        if calibration is not None:
            row = next((r for r in calibration.rows if r.threshold == threshold), None)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Apply a calibrated threshold to {category.slug}?",
            "opts": self.model._meta,
            "category": category,
            "current_label": threshold_label(category.full_from_complexity),
            "target": "never" if threshold is None else threshold,
            "target_label": threshold_label(threshold),
            "row": row,
            "current_row": calibration.current_row if calibration else None,
            "back": back,
        }
        template = "admin/routing/taskcategory/calibrate_confirm.html"
        return TemplateResponse(request, template, context)
