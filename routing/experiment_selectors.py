"""Reads for policy experiments: the running one, the rollout's share, each arm's figures."""

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Count, OuterRef, Q, Subquery

from routing.experiment_models import Experiment, ExperimentArm, ExperimentStatus
from routing.models import QualityEvaluation, QualityVerdict, RolloutSetting
from routing.quality import Retained
from routing.selectors import ledger_metrics_by
from usage.models import UsageRecord


def experiment_running() -> Experiment | None:
    """Return the running experiment, if any (there is at most one)."""
    return (
        Experiment.objects.select_related("control_version", "treatment_version")
        .filter(status=ExperimentStatus.RUNNING)
        .first()
    )


def rollout_percent() -> Decimal:
    """Return the share of subjects routing is on for: the rollout experiment's treatment
    share while it runs, else the published setting."""
    running = Experiment.objects.filter(status=ExperimentStatus.RUNNING, is_rollout=True).first()
    if running is not None:
        return running.treatment_percent
    setting = RolloutSetting.objects.first()
    return setting.routed_percent if setting else Decimal("100")


@dataclass(frozen=True)
class ArmReport:
    arm: str
    requests: int
    mini_percent: Decimal | None
    error_percent: Decimal | None
    cost_usd: Decimal
    baseline_cost_usd: Decimal
    cost_per_1k_usd: Decimal | None
    p50_latency_ms: int | None
    p95_latency_ms: int | None
    retained: Retained  # shadow verdicts on this arm's cheap answers

    @property
    def savings_usd(self) -> Decimal:
        """What this arm saved against the same requests all-premium and uncached."""
        return self.baseline_cost_usd - self.cost_usd

    @property
    def savings_percent(self) -> Decimal | None:
        if not self.baseline_cost_usd:
            return None
        return (self.savings_usd * 100 / self.baseline_cost_usd).quantize(Decimal("0.1"))


@dataclass(frozen=True)
class ExperimentReport:
    experiment: Experiment
    arms: dict[str, ArmReport]

    @property
    def cost_per_1k_change_percent(self) -> Decimal | None:
        """The treatment's cost per 1,000 requests against the control's (negative: cheaper)."""
        control, treatment = self.arms["control"], self.arms["treatment"]
        if not control.cost_per_1k_usd or treatment.cost_per_1k_usd is None:
            return None
        change = treatment.cost_per_1k_usd / control.cost_per_1k_usd - 1
        return (change * 100).quantize(Decimal("0.1"))


def experiment_report(*, experiment: Experiment) -> ExperimentReport:
    """Return each arm's requests, cost, latency, error rate, quality retained (with its
    Wilson interval) and savings against baseline, over the experiment's ledger rows
    (quality-assurance calls left out)."""
    rows = UsageRecord.objects.filter(experiment=experiment, qa=False)
    metrics = ledger_metrics_by(rows, "experiment_arm")
    verdicts = {
        row["arm"]: row
        for row in QualityEvaluation.objects.filter(request_id__in=rows.values("request_id"))
        .values(arm=_arm_of_request())
        .annotate(
            n=Count("id"),
            good=Count(
                "id", filter=Q(verdict__in=[QualityVerdict.CHEAP_BETTER, QualityVerdict.TIE])
            ),
        )
        .order_by()
    }
    arms = {}
    for arm in ExperimentArm.values:
        found = metrics.get(arm, {})
        judged = verdicts.get(arm, {"n": 0, "good": 0})
        arms[arm] = ArmReport(
            arm=arm,
            requests=found.get("requests", 0),
            mini_percent=found.get("mini_percent"),
            error_percent=found.get("error_percent"),
            cost_usd=found.get("cost_usd") or Decimal("0"),
            baseline_cost_usd=found.get("baseline_cost_usd") or Decimal("0"),
            cost_per_1k_usd=found.get("cost_per_1k_usd"),
            p50_latency_ms=found.get("p50_latency_ms"),
            p95_latency_ms=found.get("p95_latency_ms"),
            retained=Retained(good=judged["good"], n=judged["n"]),
        )
    return ExperimentReport(experiment=experiment, arms=arms)


def _arm_of_request() -> Subquery:
    return Subquery(
        UsageRecord.objects.filter(request_id=OuterRef("request_id")).values("experiment_arm")[:1]
    )
