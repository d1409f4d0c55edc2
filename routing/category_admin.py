"""Admin for the task categories: the routing matrix as a list (traffic share, threshold,
quality retained, both models), the category form with its checks, and the what-if replay
of an unsaved form over the ledger (registered on import by routing.admin)."""

import json
from decimal import Decimal

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from routing.engine import RoutingError
from routing.models import ModelProfile, TaskCategory
from routing.policy_admin import CommentedForm, PolicyVersionedAdmin
from routing.policy_versions import category_snapshot
from routing.quality_admin import QualityAdminMixin
from routing.selectors import category_traffic_share, whatif_compare


class TaskCategoryForm(CommentedForm):
    class Meta:
        model = TaskCategory
        fields = [
            "slug",
            "name",
            "description",
            "enabled",
            "is_default",
            "full_from_complexity",
            "always_full",
            "mini_model",
            "full_model",
            "system_prompt",
            "max_output_tokens",
            "expected_output_tokens",
            "classifier_keywords",
            "critical_triggers",
            "pinned_terms",
            "response_cache_enabled",
            "response_cache_ttl_s",
            "response_cache_shared",
            "deadline_s",
            "fallback_models",
            "shadow_sample_percent",
            "quality_floor_percent",
            "private",
            "deferrable",
        ]

    def clean(self) -> dict:
        data = super().clean()
        for slot, tier in (("mini_model", "mini"), ("full_model", "full")):
            model = data.get(slot)
            if model is not None and (model.tier != tier or not model.active):
                self.add_error(slot, f"Choose an active {tier}-tier model.")
        fallbacks = data.get("fallback_models") or []
        if not isinstance(fallbacks, list) or not all(isinstance(n, str) for n in fallbacks):
            self.add_error("fallback_models", 'A list of model names, e.g. ["gpt-4o"].')
        else:
            known = set(ModelProfile.objects.filter(active=True).values_list("name", flat=True))
            unknown = [name for name in fallbacks if name not in known]
            if unknown:
                self.add_error("fallback_models", f"Not an active model: {', '.join(unknown)}.")
        others = TaskCategory.objects.exclude(pk=self.instance.pk)
        keeps_default = data.get("is_default") and data.get("enabled")
        if not keeps_default and not others.filter(is_default=True, enabled=True).exists():
            raise ValidationError(
                "At least one enabled category must be the default (used when a request's "
                "category cannot be inferred)."
            )
        if data.get("is_default") and others.filter(is_default=True).exists():
            raise ValidationError("Another category is already the default: unset it first.")
        return data


@admin.register(TaskCategory)
class TaskCategoryAdmin(QualityAdminMixin, PolicyVersionedAdmin):
    form = TaskCategoryForm
    change_form_template = "admin/routing/taskcategory/change_form.html"
    change_list_template = "admin/routing/taskcategory/change_list.html"
    # Fits 1,400 px beside the navigation: "full from" says "always" for always-full
    # categories, one column holds both models, and nine rows need no filter sidebar.
    list_display = [
        "slug",
        "traffic_share",
        "threshold",
        "matrix_strip",
        "quality_retained",
        "models",
        "response_cache",
        "default",
        "on",
    ]
    list_select_related = ["mini_model", "full_model"]
    search_fields = ["slug", "name"]

    def changelist_view(self, request: HttpRequest, extra_context=None):
        self._shares = category_traffic_share(days=30, now=timezone.now())
        return super().changelist_view(request, extra_context)

    @admin.display(description="traffic (30 days)")
    def traffic_share(self, obj: TaskCategory) -> str:
        return f"{self._shares.get(obj.slug, Decimal('0.0'))}%"

    @admin.display(description="full from")
    def threshold(self, obj: TaskCategory) -> str:
        if obj.always_full:
            return "always"
        return "never" if obj.full_from_complexity is None else f"≥ {obj.full_from_complexity}"

    @admin.display(description="cache", boolean=True)
    def response_cache(self, obj: TaskCategory) -> bool:
        return obj.response_cache_enabled

    @admin.display(description="default", boolean=True)
    def default(self, obj: TaskCategory) -> bool:
        return obj.is_default

    @admin.display(description="on", boolean=True)
    def on(self, obj: TaskCategory) -> bool:
        return obj.enabled

    @admin.display(description="models (cheap / premium)")
    def models(self, obj: TaskCategory):
        return format_html(
            '<span class="matrix-models">{}<br>{}</span>', obj.mini_model.name, obj.full_model.name
        )

    @admin.display(description="complexity 0 … 10")
    def matrix_strip(self, obj: TaskCategory):
        def tier_at(level: int) -> str:
            if obj.always_full:
                return "full"
            threshold = obj.full_from_complexity
            return "full" if threshold is not None and level >= threshold else "mini"

        cells = format_html_join(
            "",
            '<span class="matrix-cell matrix-{}" title="complexity {}: {}">{}</span>',
            ((tier_at(n), n, tier_at(n), n) for n in range(11)),
        )
        return format_html('<span class="matrix-strip">{}</span>', cells)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        active = ModelProfile.objects.filter(active=True)
        form.base_fields["mini_model"].queryset = active.filter(tier="mini")
        form.base_fields["full_model"].queryset = active.filter(tier="full")
        return form

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        if request.method == "POST" and "_whatif" in request.POST:
            return self._whatif_view(request, object_id)
        return super().changeform_view(request, object_id, form_url, extra_context)

    def _whatif_view(self, request: HttpRequest, object_id: str | None):
        """Replay the unsaved form over the ledger; nothing is saved."""
        obj = self.get_object(request, object_id) if object_id else None
        form_class = self.get_form(request, obj, change=obj is not None)
        form = form_class(request.POST, request.FILES, instance=obj)
        report = None
        days = _int_or(request.POST.get("_whatif_days"), 30, 1, 365)
        if form.is_valid():
            unsaved = form.save(commit=False)
            draft = {"categories": {unsaved.slug: category_snapshot(unsaved)}}
            percent = request.POST.get("_whatif_routed_percent", "").strip()
            if percent:
                draft["rollout"] = {"routed_percent": percent}
            prices = request.POST.get("_whatif_models", "").strip()
            now = timezone.now()
            try:
                if prices:
                    draft["models"] = json.loads(prices)
                # The draft against the same traffic under the current policy (see whatif.py).
                report = whatif_compare(draft=draft, days=days, now=now)
            except ValueError:
                messages.error(request, "Model price overrides must be JSON.")
            except RoutingError as exc:
                messages.error(request, exc.message)
        admin_form = admin.helpers.AdminForm(
            form, list(self.get_fieldsets(request, obj)), {}, model_admin=self
        )
        context = {
            **self.admin_site.each_context(request),
            "title": f"What if: {obj or 'new category'}",
            "adminform": admin_form,
            "object_id": object_id,
            "original": obj,
            "is_popup": False,
            "to_field": None,
            "media": self.media + admin_form.media,
            "inline_admin_formsets": [],
            "errors": admin.helpers.AdminErrorList(form, []),
            "preserved_filters": self.get_preserved_filters(request),
            "whatif": report,
            "whatif_days": days,
            "whatif_routed_percent": request.POST.get("_whatif_routed_percent", ""),
            "whatif_models": request.POST.get("_whatif_models", ""),
        }
        return self.render_change_form(
            request, context, add=obj is None, change=obj is not None, obj=obj
        )


def _int_or(value, default: int, low: int, high: int) -> int:
    try:
        return min(max(int(value), low), high)
    except (TypeError, ValueError):
        return default
