"""Admin for the routing policy's own rows: models (with prices and circuit state), policy
versions (read-only, with restore) and feature flags. The categories, the rollout page and
the other concerns have admin modules of their own, registered by the imports at the end."""

import time

from django.contrib import admin, messages
from django.db import models
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html_join

from huntaze.read_only_admin import ReadOnlyAdminMixin
from routing.circuit import circuit_states
from routing.models import FeatureFlag, Flag, ModelProfile, PolicyVersion
from routing.policy_admin import CommentedForm, PolicyVersionedAdmin
from routing.policy_versions import policy_version_restore
from routing.price_admin import ModelPriceInline, current_prices_text
from routing.quality import percent_label


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


# The other admin modules register on import: categories, the rollout page, keys, budgets and
# in-flight requests, batches, experiments, model migrations.
from routing import (  # noqa: E402, F401
    batch_admin,
    category_admin,
    experiment_admin,
    key_admin,
    model_migration_admin,
    rollout_admin,
)
