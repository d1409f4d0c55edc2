from datetime import timedelta

from django.conf import settings
from django.contrib import admin, messages
from django.http import HttpRequest
from django.utils import timezone

from routing.models import ApiKey, ModelProfile, PolicyVersion, TaskCategory
from routing.services import api_key_create, api_key_revoke, policy_version_create


def _shutdown_warnings() -> list[str]:
    """Warnings for enabled categories that use an active model close to its shutdown."""
    horizon = timezone.now().date() + timedelta(days=settings.ROUTER_SHUTDOWN_WARNING_DAYS)
    warnings = []
    for category in TaskCategory.objects.filter(enabled=True).select_related(
        "mini_model", "full_model"
    ):
        for model in (category.mini_model, category.full_model):
            if model.active and model.shutdown_on and model.shutdown_on <= horizon:
                days = (model.shutdown_on - timezone.now().date()).days
                warnings.append(
                    f"Category '{category.slug}' uses {model.name}, which the provider shuts "
                    f"down on {model.shutdown_on:%Y-%m-%d} ({days} days): switch it to a "
                    "successor."
                )
    return warnings


class PolicyVersionedAdmin(admin.ModelAdmin):
    """Every save records a new policy version, with who changed what."""

    def save_model(self, request: HttpRequest, obj, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        policy_version_create(actor=request.user.get_username(), comment=f"admin: {obj}")

    def delete_model(self, request: HttpRequest, obj) -> None:
        super().delete_model(request, obj)
        policy_version_create(actor=request.user.get_username(), comment=f"admin: deleted {obj}")

    def changelist_view(self, request: HttpRequest, extra_context=None):
        for warning in _shutdown_warnings():
            messages.warning(request, warning)
        return super().changelist_view(request, extra_context)


@admin.register(ModelProfile)
class ModelProfileAdmin(PolicyVersionedAdmin):
    list_display = [
        "name",
        "tier",
        "input_per_mtok_usd",
        "cached_input_per_mtok_usd",
        "output_per_mtok_usd",
        "prices_effective_from",
        "shutdown_on",
        "active",
    ]
    list_filter = ["tier", "active"]
    search_fields = ["name"]


@admin.register(TaskCategory)
class TaskCategoryAdmin(PolicyVersionedAdmin):
    list_display = [
        "slug",
        "name",
        "threshold",
        "always_full",
        "mini_model",
        "full_model",
        "is_default",
        "enabled",
    ]
    list_select_related = ["mini_model", "full_model"]
    list_filter = ["enabled", "always_full"]
    search_fields = ["slug", "name"]

    @admin.display(description="full from complexity")
    def threshold(self, obj: TaskCategory) -> str:
        if obj.always_full:
            return "always"
        return "never" if obj.full_from_complexity is None else f">= {obj.full_from_complexity}"

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        active = ModelProfile.objects.filter(active=True)
        form.base_fields["mini_model"].queryset = active.filter(tier="mini")
        form.base_fields["full_model"].queryset = active.filter(tier="full")
        return form


@admin.register(PolicyVersion)
class PolicyVersionAdmin(admin.ModelAdmin):
    list_display = ["id", "created_at", "actor", "comment", "change_count"]
    readonly_fields = ["created_at", "actor", "comment", "changes", "snapshot"]

    @admin.display(description="changes")
    def change_count(self, obj: PolicyVersion) -> int:
        return len(obj.changes)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "created_at", "revoked_at"]
    fields = ["name"]
    actions = ["revoke"]

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        return ["name"] if obj else []

    def save_model(self, request: HttpRequest, obj: ApiKey, form, change: bool) -> None:
        if change:
            return
        created, plaintext = api_key_create(name=form.cleaned_data["name"])
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
