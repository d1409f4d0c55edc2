import json
from decimal import Decimal, InvalidOperation
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from routing.experiment_models import Experiment
from routing.experiment_selectors import experiment_report, experiment_running
from routing.experiments import (
    EXPERIMENT_MOVES,
    ExperimentError,
    experiment_start,
    experiment_step,
)
from routing.models import PolicyVersion
from routing.quality import percent_label


def _percent(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation as exc:
        raise CommandError(f"Not a percentage: {text!r}") from exc


class Command(BaseCommand):
    help = (
        "Policy experiments, as admin's Experiments pages: start (a treatment version or a JSON "
        "draft of changes to the published policy, e.g. "
        '\'{"categories": {"strategy": {"full_from_complexity": 5}}}\'), step (10 -> 50 -> 100 '
        "or --to P), back, stop (keep the control), finish (publish the treatment), status."
    )

    def add_arguments(self, parser) -> None:
        moves = parser.add_subparsers(dest="move", required=True)
        start = moves.add_parser("start", help="start an experiment (one runs at a time)")
        start.add_argument("--name", required=True)
        start.add_argument("--treatment-version", type=int, help="a stored policy version id")
        start.add_argument("--draft", help="JSON changes to the published policy, or @file.json")
        start.add_argument("--percent", default="10", help="treatment share at the start")
        step = moves.add_parser("step", help="next step (10 -> 50 -> 100) or --to P")
        step.add_argument("--to", help="a treatment share from above 0 to 100")
        moves.add_parser("back", help="previous step (100 -> 50 -> 10)")
        moves.add_parser("stop", help="end it: everyone on the control (the published policy)")
        moves.add_parser("finish", help="end it: the treatment published for everyone")
        status = moves.add_parser("status", help="the running (or a given) experiment's arms")
        status.add_argument("--id", type=int, help="an experiment id (default: the running one)")
        for name in ("start", "step", "back", "stop", "finish"):
            moves.choices[name].add_argument("--comment", default="", help="why (recorded)")

    def handle(self, *args, **options) -> None:
        move, actor, comment = options["move"], "manage.py", options.get("comment", "")
        try:
            if move == "start":
                experiment = self._start(options, actor)
            elif move == "step":
                to = _percent(options["to"]) if options["to"] else None
                experiment = experiment_step(actor=actor, percent=to, comment=comment)
            elif move in EXPERIMENT_MOVES:
                experiment = EXPERIMENT_MOVES[move](actor=actor, comment=comment)
            else:
                experiment = self._shown(options.get("id"))
        except ExperimentError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        self._report(experiment)

    def _start(self, options: dict, actor: str) -> Experiment:
        treatment, draft = None, None
        if options["treatment_version"] is not None:
            treatment = PolicyVersion.objects.filter(pk=options["treatment_version"]).first()
            if treatment is None:
                raise CommandError(f"No policy version {options['treatment_version']}.")
        if options["draft"]:
            text = options["draft"]
            text = Path(text[1:]).read_text() if text.startswith("@") else text
            try:
                draft = json.loads(text)
            except ValueError as exc:
                raise CommandError(f"The draft is not JSON: {exc}") from exc
            if not isinstance(draft, dict):
                raise CommandError("The draft must be a JSON object.")
        return experiment_start(
            name=options["name"],
            actor=actor,
            treatment=treatment,
            draft=draft,
            percent=_percent(options["percent"]),
            comment=options["comment"],
        )

    def _shown(self, experiment_id: int | None) -> Experiment:
        if experiment_id is not None:
            found = Experiment.objects.filter(pk=experiment_id).first()
            if found is None:
                raise CommandError(f"No experiment {experiment_id}.")
            return found
        running = experiment_running()
        if running is None:
            raise CommandError("No experiment is running (status --id N shows an ended one).")
        return running

    def _report(self, experiment: Experiment) -> None:
        share = percent_label(experiment.treatment_percent)
        self.stdout.write(
            f"experiment {experiment.pk} '{experiment.name}': {experiment.status}, treatment "
            f"v{experiment.treatment_version_id} on {share}%, control the published policy "
            f"(v{experiment.control_version_id} at the start)"
        )
        report = experiment_report(experiment=experiment)
        self.stdout.write(
            f"{'arm':<10}{'requests':>9}{'cost $':>12}{'per 1k $':>10}{'errors':>8}"
            f"{'p50 ms':>8}{'p95 ms':>8}{'retained':>22}{'savings $':>12}"
        )
        for arm in report.arms.values():
            retained = "-"
            if arm.retained.n:
                low, high = arm.retained.interval
                retained = f"{arm.retained.percent}% ({low}-{high}) n={arm.retained.n}"
            self.stdout.write(
                f"{arm.arm:<10}{arm.requests:>9}{arm.cost_usd:>12.6f}"
                f"{arm.cost_per_1k_usd if arm.cost_per_1k_usd is not None else '-':>10}"
                f"{(str(arm.error_percent) + '%') if arm.error_percent is not None else '-':>8}"
                f"{arm.p50_latency_ms if arm.p50_latency_ms is not None else '-':>8}"
                f"{arm.p95_latency_ms if arm.p95_latency_ms is not None else '-':>8}"
                f"{retained:>22}{arm.savings_usd:>12.6f}"
            )
