"""Admin for the staged rollout: one page with where the launch stands, each arm's figures
and the router artifacts in use, and the audited moves (rollout share, router artifact, its
trial) behind it (registered on import by routing.admin)."""

from datetime import timedelta
from decimal import Decimal, InvalidOperation

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from routing.experiment_selectors import experiment_running, rollout_percent
from routing.experiments import ExperimentError, rollout_set_percentage
from routing.learned.overview import router_overview
from routing.models import RolloutSetting
from routing.policy_versions import router_artifact_set, router_trial_set
from routing.selectors import rollout_arm_metrics, router_artifact_metrics

ROLLOUT_PRESETS = (Decimal("0"), Decimal("10"), Decimal("50"), Decimal("100"))
WINDOWS_H = {"1h": 1, "24h": 24, "7d": 24 * 7, "30d": 24 * 30}


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
