"""The admin base for rows that are part of the routing policy: every save or delete records a
new policy version (who, what, why, from a "change comment" field), and each list page warns
of models close to their shutdown that enabled categories still use."""

from datetime import timedelta

from django import forms
from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest
from django.utils import timezone

from routing.models import ModelProfile, TaskCategory
from routing.policy_versions import policy_version_create
from routing.quality_admin import page_warnings


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
