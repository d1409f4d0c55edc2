import json
import time
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import models
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from huntaze.read_only_admin import ReadOnlyAdminMixin
from routing.circuit import circuit_states
from routing.engine import RoutingError
from routing.experiment_selectors import experiment_running, rollout_percent
from routing.experiments import ExperimentError, rollout_set_percentage
from routing.learned.overview import router_overview
from routing.models import (
    FeatureFlag,
    Flag,
    ModelProfile,
    PolicyVersion,
    RolloutSetting,
    TaskCategory,
)
from routing.policy_versions import (
    category_snapshot,
    policy_version_create,
    policy_version_restore,
    router_artifact_set,
    router_trial_set,
)
from routing.price_admin import ModelPriceInline, current_prices_text
from routing.quality import percent_label
from routing.quality_admin import QualityAdminMixin, page_warnings
from routing.selectors import (
    category_traffic_share,
    rollout_arm_metrics,
    router_artifact_metrics,
    whatif_compare,
)

ROLLOUT_PRESETS = (Decimal("0"), Decimal("10"), Decimal("50"), Decimal("100"))
WINDOWS_H = {"1h": 1, "24h": 24, "7d": 24 * 7, "30d": 24 * 30}


def _shutdown_warning() -> str | None:
    """One warning naming every active model close to its shutdown that enabled categories
    use, or None (one banner, however many models)."""
    today = timezone.now().date()
    horizon = today + timedelta(days=settings.ROUTER_SHUTDOWN_WARNING_DAYS)
    users: dict[ModelProfile, list[str]] = {}
    for category in TaskCategory.objects.filter(enabled=True).select_related(
        "mini_model", "full_model"
    ):
        for model in (category.mini_model, category.full_model):
            if model.active and model.shutdown_on and model.shutdown_on <= horizon:
                users.setdefault(model, []).append(category.slug)
    if not users:
        return None
    models = "; ".join(
        f"{model.name} shuts down on {model.shutdown_on:%Y-%m-%d} "
        f"({(model.shutdown_on - today).days} days), used by {', '.join(slugs)}"
        for model, slugs in sorted(users.items(), key=lambda item: item[0].name)
    )
    # A word first: admin capitalises the first letter of a message (Gpt-4o).
    return (
        f"Model shutdown ahead: {models}. Switch these categories to a successor "
        "(Routing › Model migrations)."
    )


class CommentedForm(forms.ModelForm):
    change_comment = forms.CharField(
        required=False, max_length=500, help_text="Why (kept in the policy version history)."
    )


class PolicyVersionedAdmin(admin.ModelAdmin):
    """Every save records a new policy version, with who changed what and why."""

    form = CommentedForm

    def get_fields(self, request, obj=None):
        fields = [f for f in super().get_fields(request, obj) if f != "change_comment"]
        return [*fields, "change_comment"]

    def save_model(self, request: HttpRequest, obj, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        self._version(request, form.cleaned_data.get("change_comment") or f"admin: {obj}")

    def save_related(self, request: HttpRequest, form, formsets, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        # Many-to-many fields (flag API keys) are saved only now.
        self._version(request, form.cleaned_data.get("change_comment") or "admin")

    def delete_model(self, request: HttpRequest, obj) -> None:
        super().delete_model(request, obj)
        self._version(request, f"admin: deleted {obj}")

    def _version(self, request: HttpRequest, comment: str) -> None:
        policy_version_create(actor=request.user.get_username(), comment=comment)

    def changelist_view(self, request: HttpRequest, extra_context=None):
        warning = _shutdown_warning()
        page_warnings(request, [warning] if warning else [])
        return super().changelist_view(request, extra_context)


@admin.register(ModelProfile)
class ModelProfileAdmin(PolicyVersionedAdmin):
    list_display = [
        "name",
        "tier",
        "current_prices",
        "shutdown_on",
        "active",
        "circuit",
    ]
    list_filter = ["tier", "active"]
    # A provider endpoint typed without a scheme is HTTPS (Django 6's default for URLField).
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    search_fields = ["name"]
    inlines = [ModelPriceInline]

    def changelist_view(self, request: HttpRequest, extra_context=None):
        names = list(ModelProfile.objects.values_list("name", flat=True))
        self._circuits = circuit_states(names, now=time.time())
        return super().changelist_view(request, extra_context)

    @admin.display(description="circuit")
    def circuit(self, obj: ModelProfile) -> str:
        return self._circuits.get(obj.name, "unknown")

    @admin.display(description="prices today (in / cached / out per 1M)")
    def current_prices(self, obj: ModelProfile) -> str:
        return current_prices_text(obj)


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


@admin.register(PolicyVersion)
class PolicyVersionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    deletable = False
    list_display = ["id", "created_at", "actor", "comment", "change_summary"]
    readonly_fields = ["created_at", "actor", "comment", "changes_list", "snapshot"]
    fields = readonly_fields
    change_form_template = "admin/routing/policyversion/change_form.html"

    @admin.display(description="changes")
    def change_summary(self, obj: PolicyVersion) -> str:
        head = "; ".join(obj.changes[:2])
        return head + (f" (+{len(obj.changes) - 2} more)" if len(obj.changes) > 2 else "")

    @admin.display(description="what changed")
    def changes_list(self, obj: PolicyVersion):
        return format_html_join("", "<div><code>{}</code></div>", ((c,) for c in obj.changes))

    def get_urls(self):
        restore = self.admin_site.admin_view(self.restore_view)
        return [
            path("<int:pk>/restore/", restore, name="routing_policyversion_restore"),
            *super().get_urls(),
        ]

    def restore_view(self, request: HttpRequest, pk: int):
        if not request.user.has_perm("routing.change_taskcategory"):
            return HttpResponseRedirect(reverse("admin:index"))
        version = get_object_or_404(PolicyVersion, pk=pk)
        if request.method == "POST":
            created = policy_version_restore(version=version, actor=request.user.get_username())
            self.message_user(
                request, f"Restored version {version.pk} as version {created.pk}.", messages.SUCCESS
            )
            return HttpResponseRedirect(reverse("admin:routing_policyversion_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Restore policy version {version.pk}?",
            "version": version,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/routing/policyversion/restore.html", context)


@admin.register(RolloutSetting)
class RolloutSettingAdmin(admin.ModelAdmin):
    """One page: where the launch stands, each arm's figures, and the move buttons."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def get_urls(self):
        return [
            path(
                "",
                self.admin_site.admin_view(self.rollout_view),
                name="routing_rolloutsetting_changelist",
            ),
            path(
                "move/",
                self.admin_site.admin_view(self.move_view),
                name="routing_rollout_move",
            ),
            path(
                "router/",
                self.admin_site.admin_view(self.router_view),
                name="routing_router_artifact",
            ),
            path(
                "router/trial/",
                self.admin_site.admin_view(self.router_trial_view),
                name="routing_router_trial",
            ),
        ]

    def rollout_view(self, request: HttpRequest):
        setting, _ = RolloutSetting.objects.get_or_create(pk=1)
        window = request.GET.get("window", "24h")
        hours = WINDOWS_H.get(window, 24)
        now = timezone.now()
        arms = rollout_arm_metrics(start=now - timedelta(hours=hours), end=now)
        current = rollout_percent()
        context = {
            **self.admin_site.each_context(request),
            "title": "Staged rollout",
            "opts": self.model._meta,
            "setting": setting,
            "routed_percent": current,
            "experiment": experiment_running(),
            "arms": arms,
            "window": window,
            "windows": list(WINDOWS_H),
            "advance": [p for p in ROLLOUT_PRESETS if p > current],
            "step_back": [p for p in ROLLOUT_PRESETS if p < current],
            "can_change": request.user.has_perm("routing.change_rolloutsetting"),
            "router": router_overview(),
        }
        traffic = router_artifact_metrics(start=now - timedelta(hours=hours), end=now)
        for artifact in context["router"]["artifacts"]:
            artifact["traffic"] = traffic.get(artifact["id"])
        if context["router"]["problem"]:
            messages.warning(request, context["router"]["problem"])
        return TemplateResponse(request, "admin/routing/rollout.html", context)

    def router_trial_view(self, request: HttpRequest):
        """POST (with CSRF): start, resize or end (0%) a trial of another router artifact."""
        target = reverse("admin:routing_rolloutsetting_changelist")
        if request.method != "POST" or not request.user.has_perm("routing.change_rolloutsetting"):
            return HttpResponseRedirect(target)
        artifact = request.POST.get("artifact", "")
        try:
            percent = Decimal(request.POST.get("percent", "")).quantize(Decimal("0.01"))
            version = router_trial_set(
                artifact_id=artifact,
                percent=percent,
                actor=request.user.get_username(),
                comment=request.POST.get("comment", "")[:500],
            )
        except InvalidOperation:
            self.message_user(request, "Choose a trial share from 0 to 100%.", messages.ERROR)
        except ValueError as error:
            self.message_user(request, str(error), messages.ERROR)
        else:
            self.message_user(request, f"{version.comment} (policy version {version.pk}).")
        return HttpResponseRedirect(target)

    def router_view(self, request: HttpRequest):
        """POST (with CSRF): publish another router artifact as a new policy version."""
        target = reverse("admin:routing_rolloutsetting_changelist")
        if request.method != "POST" or not request.user.has_perm("routing.change_rolloutsetting"):
            return HttpResponseRedirect(target)
        artifact = request.POST.get("artifact", "")
        try:
            version = router_artifact_set(
                artifact_id=artifact,
                actor=request.user.get_username(),
                comment=request.POST.get("comment", "")[:500],
            )
        except ValueError as error:
            self.message_user(request, str(error), messages.ERROR)
        else:
            self.message_user(
                request,
                f"Router {artifact} is in use from policy version {version.pk}.",
                messages.SUCCESS,
            )
        return HttpResponseRedirect(target)

    def move_view(self, request: HttpRequest):
        """GET asks for confirmation; POST (with CSRF) moves the rollout and audits it."""
        if not request.user.has_perm("routing.change_rolloutsetting"):
            return HttpResponseRedirect(reverse("admin:routing_rolloutsetting_changelist"))
        current = rollout_percent()
        source = request.POST if request.method == "POST" else request.GET
        try:
            target = Decimal(source.get("to", "")).quantize(Decimal("0.01"))
            if not Decimal("0") <= target <= Decimal("100"):
                raise InvalidOperation
        except InvalidOperation:
            self.message_user(request, "Choose a percentage from 0 to 100.", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:routing_rolloutsetting_changelist"))
        if request.method == "POST" and source.get("confirm") == "yes":
            comment = source.get("comment", "")[:500]
            try:
                rollout_set_percentage(
                    percent=target, actor=request.user.get_username(), comment=comment
                )
            except ExperimentError as error:
                self.message_user(request, error.message, messages.ERROR)
            else:
                self.message_user(
                    request,
                    f"Routing is now on for {target:g}% of users (was {current:g}%).",
                    messages.SUCCESS,
                )
            return HttpResponseRedirect(reverse("admin:routing_rolloutsetting_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "title": "Confirm the rollout change",
            "opts": self.model._meta,
            "routed_percent": current,
            "target": target,
            "direction": "advance" if target > current else "step back",
        }
        return TemplateResponse(request, "admin/routing/rollout_confirm.html", context)


class FeatureFlagForm(CommentedForm):
    class Meta:
        model = FeatureFlag
        fields = ["name", "enabled", "percent", "api_keys", "description"]


# What each switch does, shown beside it unless the row has a description of its own.
FLAG_EFFECTS = {
    Flag.ROUTING: "Routes requests by the policy. Off, or for users outside its share: the "
    "control behaviour (everything on the premium model, no routing).",
    Flag.RESPONSE_CACHE: "Answers identical requests from our response cache, for categories "
    "that enable it. Off: every request calls a model.",
    Flag.PROMPT_CACHE_KEY: "Sends a per-category prompt_cache_key, so the provider's prompt "
    "cache keeps each category's prefix warm.",
    Flag.STREAMING: "Allows stream: true. Off: a streamed request gets a 400 streaming_disabled.",
    Flag.BATCH: "Accepts batch jobs (/api/v1/batches, provider Batch API at batch price). "
    "Off: 403 batch_disabled.",
    Flag.QUALITY_SAMPLING: "Shadow evaluation: replays a sample of cheap answers on the "
    "premium model and has a judge compare them (QA spend; the categories set the sample).",
}


@admin.register(FeatureFlag)
class FeatureFlagAdmin(PolicyVersionedAdmin):
    form = FeatureFlagForm
    change_list_template = "admin/routing/featureflag/change_list.html"
    list_display = ["name", "enabled", "on_for", "key_limit", "effect", "updated_at"]
    list_editable = ["enabled"]
    filter_horizontal = ["api_keys"]

    @admin.display(description="on for")
    def on_for(self, obj: FeatureFlag) -> str:
        if not obj.enabled:
            return "nobody (off)"
        return "everyone" if obj.percent is None else f"{percent_label(obj.percent)}% of users"

    @admin.display(description="limited to keys")
    def key_limit(self, obj: FeatureFlag) -> str:
        names = [k.name for k in obj.api_keys.all()]
        return ", ".join(names) or "all keys"

    @admin.display(description="what it does")
    def effect(self, obj: FeatureFlag) -> str:
        return obj.description or FLAG_EFFECTS.get(obj.name, "")

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("api_keys")

    def save_model(self, request: HttpRequest, obj, form, change: bool) -> None:
        # The version is recorded in save_related, once the key list is saved too.
        admin.ModelAdmin.save_model(self, request, obj, form, change)


# The other admin modules register on import: keys, budgets and in-flight requests; batches.
from routing import (  # noqa: E402, F401
    batch_admin,
    experiment_admin,
    key_admin,
    model_migration_admin,
)
