"""Admin for policy experiments: the list, a start form, and each experiment's page (its
arms' figures and the step / step back / stop / finish buttons)."""

import json
from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse

from routing.experiment_models import Experiment
from routing.experiment_selectors import experiment_report
from routing.experiments import EXPERIMENT_MOVES, STEPS, ExperimentError, experiment_start
from routing.models import PolicyVersion
from routing.quality import percent_label


class ExperimentStartForm(forms.Form):
    name = forms.CharField(max_length=120)
    treatment_version = forms.ModelChoiceField(
        queryset=PolicyVersion.objects.all(),
        required=False,
        help_text="A stored policy version (a draft, or an earlier one) as the treatment.",
    )
    draft = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 5, "cols": 80}),
        help_text="Or the changes to the published policy, as JSON in the snapshot's shape, "
        'e.g. {"categories": {"strategy": {"full_from_complexity": 5}}}.',
    )
    percent = forms.DecimalField(
        min_value=Decimal("0.01"),
        max_value=Decimal("100"),
        decimal_places=2,
        initial=STEPS[0],
        help_text="Share of subjects on the treatment at the start.",
    )
    comment = forms.CharField(max_length=500, required=False)

    def clean_draft(self) -> dict | None:
        text = self.cleaned_data["draft"].strip()
        if not text:
            return None
        try:
            draft = json.loads(text)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}") from exc
        if not isinstance(draft, dict):
            raise forms.ValidationError("The draft is a JSON object, like a policy snapshot.")
        return draft

    def clean(self) -> dict:
        cleaned = super().clean()
        if (cleaned.get("treatment_version") is None) == (cleaned.get("draft") is None):
            raise forms.ValidationError("Give either a treatment version or a draft, not both.")
        return cleaned


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "name",
        "status",
        "treatment_share",
        "control_version",
        "treatment_version",
        "started_at",
        "ended_at",
    ]
    list_select_related = ["control_version", "treatment_version"]
    change_list_template = "admin/routing/experiment/change_list.html"

    @admin.display(description="treatment share")
    def treatment_share(self, obj: Experiment) -> str:
        return f"{percent_label(obj.treatment_percent)}%"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # started through the start page, by the service

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # ledger rows point at it

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("start/", view(self.start_view), name="routing_experiment_start"),
            path("<int:pk>/move/", view(self.move_view), name="routing_experiment_move"),
            *super().get_urls(),
        ]

    def _can_change(self, request: HttpRequest) -> bool:
        return request.user.has_perm("routing.change_experiment")

    def change_view(self, request: HttpRequest, object_id: str, form_url="", extra_context=None):
        """The experiment's page: where it stands, each arm's figures, the move buttons."""
        experiment = get_object_or_404(
            Experiment.objects.select_related("control_version", "treatment_version"),
            pk=object_id,
        )
        report = experiment_report(experiment=experiment)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Experiment {experiment.pk}: {experiment.name}",
            "opts": self.model._meta,
            "experiment": experiment,
            "report": report,
            "can_change": self._can_change(request) and experiment.running,
            "next_step": next((s for s in STEPS if s > experiment.treatment_percent), None),
            "step_back": next(
                (s for s in reversed(STEPS) if s < experiment.treatment_percent), None
            ),
        }
        return TemplateResponse(request, "admin/routing/experiment/report.html", context)

    def move_view(self, request: HttpRequest, pk: int):
        """POST (with CSRF): step, step back, stop or finish the running experiment."""
        target = reverse("admin:routing_experiment_change", args=[pk])
        move = EXPERIMENT_MOVES.get(request.POST.get("move", ""))
        if request.method != "POST" or move is None or not self._can_change(request):
            return HttpResponseRedirect(target)
        running = get_object_or_404(Experiment, pk=pk)
        if not running.running:
            self.message_user(request, f"Experiment {pk} is {running.status}.", messages.ERROR)
            return HttpResponseRedirect(target)
        try:
            done = move(
                actor=request.user.get_username(), comment=request.POST.get("comment", "")[:500]
            )
        except ExperimentError as error:
            self.message_user(request, error.message, messages.ERROR)
        else:
            self.message_user(
                request,
                f"Experiment {done.pk} is {done.status}, treatment on "
                f"{percent_label(done.treatment_percent)}%.",
                messages.SUCCESS,
            )
        return HttpResponseRedirect(target)

    def start_view(self, request: HttpRequest):
        """GET shows the start form; POST starts the experiment (one may run at a time)."""
        if not self._can_change(request):
            return HttpResponseRedirect(reverse("admin:routing_experiment_changelist"))
        form = ExperimentStartForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                experiment = experiment_start(
                    name=data["name"],
                    actor=request.user.get_username(),
                    treatment=data["treatment_version"],
                    draft=data["draft"],
                    percent=data["percent"],
                    comment=data["comment"],
                )
            except ExperimentError as error:
                form.add_error(None, error.message)
            else:
                self.message_user(request, f"Started {experiment}.", messages.SUCCESS)
                return HttpResponseRedirect(
                    reverse("admin:routing_experiment_change", args=[experiment.pk])
                )
        context = {
            **self.admin_site.each_context(request),
            "title": "Start an experiment",
            "opts": self.model._meta,
            "form": form,
        }
        status = 400 if form.errors else 200
        return TemplateResponse(
            request, "admin/routing/experiment/start.html", context, status=status
        )
