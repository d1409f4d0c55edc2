"""Admin for the migration assistant: one page with the shutdowns ahead, each migration's
re-priced cost and qualification, and the buttons for its steps (each a POST with CSRF that
calls one service and reports with a message)."""

from collections.abc import Callable
from decimal import Decimal, InvalidOperation

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from routing.model_migration import (
    MigrationError,
    categories_on,
    migration_cancel,
    migration_create,
    migration_finish,
    migration_qualify_start,
    migration_stage_set,
)
from routing.model_migration_models import OPEN_STATES, ModelMigration
from routing.model_migration_selectors import (
    migration_repricing,
    migrations_recent,
    qualification_results,
    shutdowns_ahead,
    successor_choices,
)
from routing.models import ModelProfile
from routing.quality import percent_label

STAGES = (Decimal("10"), Decimal("50"), Decimal("100"))
PAGE = "admin:routing_modelmigration_changelist"


def _percent(value: str) -> Decimal:
    """Parse a share in percent; MigrationError when it is not a number from 0 to 100."""
    try:
        percent = Decimal(value).quantize(Decimal("0.01"))
    except (InvalidOperation, TypeError):
        raise MigrationError(f"Not a percentage: {value!r}.") from None
    if not Decimal("0") <= percent <= Decimal("100"):
        raise MigrationError(f"{percent_label(percent)}% is outside 0-100.")
    return percent


@admin.register(ModelMigration)
class ModelMigrationAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("", view(self.migration_view), name="routing_modelmigration_changelist"),
            path("create/", view(self.create_view), name="routing_migration_create"),
            path("<int:pk>/<str:step>/", view(self.step_view), name="routing_migration_step"),
        ]

    def _can_change(self, request: HttpRequest) -> bool:
        return request.user.has_perm("routing.change_modelmigration") and request.user.has_perm(
            "routing.change_taskcategory"
        )

    def migration_view(self, request: HttpRequest):
        now = timezone.now()
        shutdowns = shutdowns_ahead(today=now.date())
        migrations = []
        for migration in migrations_recent():
            entry = {"migration": migration}
            if migration.is_open:
                entry["repricing"] = migration_repricing(
                    old_model=migration.old_model,
                    successor=migration.successor,
                    categories=migration.categories,
                    now=now,
                )
            # Kept for closed ones too: what the switch was decided on.
            entry["qualification"] = qualification_results(migration=migration)
            migrations.append(entry)
        open_models = {m.old_model_id for m in ModelMigration.objects.filter(state__in=OPEN_STATES)}
        choices = [
            {
                "model": model,
                "categories": categories_on(model),
                "successors": successor_choices(model=model),
            }
            for model in ModelProfile.objects.filter(active=True).order_by("tier", "name")
            if model.pk not in open_models
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": "Model migrations",
            "opts": self.model._meta,
            "shutdowns": shutdowns,
            "migrations": migrations,
            "choices": [c for c in choices if c["categories"] and c["successors"]],
            "stages": STAGES,
            "can_change": self._can_change(request),
        }
        return TemplateResponse(request, "admin/routing/migration.html", context)

    def create_view(self, request: HttpRequest):
        """POST: choose a successor (a draft: routing does not change yet)."""
        if request.method != "POST" or not self._can_change(request):
            return HttpResponseRedirect(reverse(PAGE))
        try:
            old = ModelProfile.objects.filter(pk=request.POST.get("old_model") or 0).first()
            successor = ModelProfile.objects.filter(pk=request.POST.get("successor") or 0).first()
            if old is None or successor is None:
                raise MigrationError("Choose the model to replace and its successor.")
            migration = migration_create(
                old_model=old,
                successor=successor,
                categories=request.POST.getlist("categories"),
                sample_percent=_percent(request.POST.get("sample_percent", "5")),
                actor=request.user.get_username(),
            )
        except MigrationError as error:
            self.message_user(request, str(error), messages.ERROR)
        else:
            self.message_user(
                request,
                f"Successor chosen: {migration.successor.name} for {migration.old_model.name} "
                f"({', '.join(migration.categories)}). Nothing has changed in routing yet.",
                messages.SUCCESS,
            )
        return HttpResponseRedirect(reverse(PAGE))

    def step_view(self, request: HttpRequest, pk: int, step: str):
        """POST: qualify, stage, finish or cancel one migration."""
        steps: dict[str, Callable] = {
            "qualify": self._qualify,
            "stage": self._stage,
            "finish": self._finish,
            "cancel": self._cancel,
        }
        if request.method != "POST" or step not in steps or not self._can_change(request):
            return HttpResponseRedirect(reverse(PAGE))
        migration = get_object_or_404(ModelMigration, pk=pk)
        try:
            note = steps[step](request, migration)
        except MigrationError as error:
            self.message_user(request, str(error), messages.ERROR)
        else:
            self.message_user(request, note, messages.SUCCESS)
        return HttpResponseRedirect(reverse(PAGE))

    def _qualify(self, request: HttpRequest, migration: ModelMigration) -> str:
        percent = _percent(request.POST.get("sample_percent", ""))
        version = migration_qualify_start(
            migration=migration, sample_percent=percent, actor=request.user.get_username()
        )
        return f"{version.comment} (policy version {version.pk})."

    def _stage(self, request: HttpRequest, migration: ModelMigration) -> str:
        percent = _percent(request.POST.get("percent", ""))
        version = migration_stage_set(
            migration=migration, percent=percent, actor=request.user.get_username()
        )
        return f"{version.comment} (policy version {version.pk})."

    def _finish(self, request: HttpRequest, migration: ModelMigration) -> str:
        if request.POST.get("confirm") != "yes":
            raise MigrationError("Tick the confirmation to finish the switch.")
        version = migration_finish(
            migration=migration,
            actor=request.user.get_username(),
            comment=request.POST.get("comment", "")[:500],
        )
        return f"Switch finished: {version.comment} (policy version {version.pk})."

    def _cancel(self, request: HttpRequest, migration: ModelMigration) -> str:
        version = migration_cancel(migration=migration, actor=request.user.get_username())
        return f"{version.comment} (policy version {version.pk})."
