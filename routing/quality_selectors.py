"""Reads for shadow evaluation: quality retained per category and band, and calibration."""

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, Max, Q, Sum
from django.db.models.functions import Coalesce

from huntaze.money import ZERO
from routing.models import QualityEvaluation, TaskCategory
from routing.quality import (
    BANDS,
    CalibrationRow,
    Judged,
    QaSpend,
    Retained,
    at_least_as_good,
    calibration_choice,
    calibration_rows,
    candidate_thresholds,
    complexity_band,
)
from routing.selectors import policy_get, replay_groups
from routing.whatif import DAYS_PER_MONTH, replay
from usage.models import UsageRecord


@dataclass(frozen=True)
class CategoryQuality:
    category: str
    floor_percent: Decimal
    overall: Retained
    bands: dict[str, Retained]
    verdicts: dict[str, int] = field(default_factory=dict)
    qa_cost_usd: Decimal = Decimal("0")


@dataclass(frozen=True)
class QualityPanel:
    days: int
    min_samples: int
    categories: list[CategoryQuality]
    qa_cost_usd: Decimal
    qa_calls: int
    qa_spend: QaSpend
    sandbox: bool = False  # some verdicts came from the sandbox judge (synthetic)

    @property
    def alerts(self) -> list[CategoryQuality]:
        return [c for c in self.categories if c.overall.below_floor]

    @property
    def evaluations(self) -> int:
        return sum(c.overall.n for c in self.categories)


def _floors() -> dict[str, Decimal]:
    return dict(TaskCategory.objects.values_list("slug", "quality_floor_percent"))


def quality_panel(*, now: datetime, days: int | None = None) -> QualityPanel:
    """Return quality retained per category and complexity band over the last `days`, with
    Wilson 95% intervals, the alert flag, and the QA spend (shadow and judge calls)."""
    days = days or settings.QUALITY_WINDOW_DAYS
    min_samples = settings.QUALITY_MIN_SAMPLES
    start = now - timedelta(days=days)
    floors = _floors()
    counts: dict[str, dict[str, list[int]]] = {}
    verdicts: dict[str, dict[str, int]] = {}
    evaluations = QualityEvaluation.objects.filter(created_at__gte=start, created_at__lt=now)
    rows = (
        evaluations.values("category", "complexity", "verdict").annotate(n=Count("id")).order_by()
    )
    for row in rows:
        good = row["n"] if at_least_as_good(row["verdict"]) else 0
        per_band = counts.setdefault(row["category"], {})
        for key in ("all", complexity_band(row["complexity"])):
            tally = per_band.setdefault(key, [0, 0])
            tally[0] += good
            tally[1] += row["n"]
        per_verdict = verdicts.setdefault(row["category"], {})
        per_verdict[row["verdict"]] = per_verdict.get(row["verdict"], 0) + row["n"]
    window = UsageRecord.objects.filter(created_at__gte=start, created_at__lt=now)
    qa = window.filter(qa=True)
    qa_by_category = dict(
        qa.values("category")
        .annotate(c=Coalesce(Sum("cost_usd"), ZERO))
        .values_list("category", "c")
    )
    # The routed bill in the same pass over the window: QA spend is judged against it.
    qa_totals = window.aggregate(
        cost=Coalesce(Sum("cost_usd", filter=Q(qa=True)), ZERO),
        calls=Count("id", filter=Q(qa=True)),
        routed=Coalesce(Sum("cost_usd", filter=Q(qa=False)), ZERO),
    )

    def retained(slug: str, key: str) -> Retained:
        good, n = counts.get(slug, {}).get(key, [0, 0])
        floor = floors.get(slug, Decimal("95"))
        return Retained(good=good, n=n, floor_percent=floor, min_samples=min_samples)

    categories = [
        CategoryQuality(
            category=slug,
            floor_percent=floors.get(slug, Decimal("95")),
            overall=retained(slug, "all"),
            bands={label: retained(slug, label) for label, _, _ in BANDS},
            verdicts=verdicts.get(slug, {}),
            qa_cost_usd=qa_by_category.get(slug, Decimal("0")),
        )
        for slug in sorted(counts, key=lambda s: (-counts[s]["all"][1], s))
    ]
    return QualityPanel(
        days=days,
        min_samples=min_samples,
        categories=categories,
        qa_cost_usd=qa_totals["cost"],
        qa_calls=qa_totals["calls"],
        qa_spend=QaSpend(
            qa_cost_usd=qa_totals["cost"],
            routed_cost_usd=qa_totals["routed"],
            warn_percent=Decimal(settings.QUALITY_QA_SPEND_WARN_PERCENT),
        ),
        sandbox=evaluations.filter(sandbox=True).exists(),
    )


@dataclass(frozen=True)
class CategoryCalibration:
    category: str
    days: int
    current: int | None
    floor_percent: Decimal
    evaluations: int
    rows: list[CalibrationRow]
    suggestion: CalibrationRow | None

    @property
    def current_row(self) -> CalibrationRow:
        return next(row for row in self.rows if row.threshold == self.current)

    @property
    def changes(self) -> bool:
        return self.suggestion is not None and self.suggestion.threshold != self.current

    @property
    def monthly_saving_usd(self) -> Decimal:
        if self.suggestion is None:
            return Decimal("0")
        return self.current_row.projected_monthly_usd - self.suggestion.projected_monthly_usd


def category_calibration(
    *, category: TaskCategory, now: datetime, days: int | None = None
) -> CategoryCalibration | None:
    """Return one category's calibration table, or None when it has no cheap tier option.

    Projected monthly cost per threshold is the what-if replay of the category's ledger
    (last `days`) with only the threshold changed; projected quality comes from the
    category's evaluations over the same window (see routing.quality)."""
    if category.always_full or not category.enabled:
        return None
    days = days or settings.QUALITY_WINDOW_DAYS
    start = now - timedelta(days=days)
    policy = policy_get()
    rule = policy.categories.get(category.slug)
    if rule is None:
        return None
    judged = [
        Judged(complexity=c, good=at_least_as_good(v))
        for c, v in QualityEvaluation.objects.filter(
            category=category.slug, created_at__gte=start, created_at__lt=now
        ).values_list("complexity", "verdict")
    ]
    groups = list(replay_groups(start=start, end=now, category=category.slug))
    traffic_max = (
        UsageRecord.objects.filter(
            category=category.slug,
            created_at__gte=start,
            created_at__lt=now,
            qa=False,
            critical=False,
        )
        .aggregate(m=Max("complexity"))
        .get("m")
    )
    monthly = {}
    for threshold in candidate_thresholds():
        draft = replace(
            policy,
            categories={**policy.categories, category.slug: replace(rule, full_from=threshold)},
        )
        projection = replay(groups=groups, policy=draft, days=days).total
        # Four places: sandbox and small categories cost fractions of a cent a month.
        monthly[threshold] = (projection.projected_cost_usd * DAYS_PER_MONTH / days).quantize(
            Decimal("0.0001")
        )
    rows = calibration_rows(
        judged=judged,
        monthly_cost_by_threshold=monthly,
        floor_percent=category.quality_floor_percent,
        min_samples=settings.QUALITY_MIN_SAMPLES,
        current=category.full_from_complexity,
        traffic_max_complexity=traffic_max,
    )
    return CategoryCalibration(
        category=category.slug,
        days=days,
        current=category.full_from_complexity,
        floor_percent=category.quality_floor_percent,
        evaluations=len(judged),
        rows=rows,
        suggestion=calibration_choice(rows, current=category.full_from_complexity),
    )


def calibration_report(*, now: datetime, days: int | None = None) -> list[CategoryCalibration]:
    """Return the calibration of every enabled category with a cheap tier option."""
    report = []
    for category in TaskCategory.objects.filter(enabled=True, always_full=False):
        calibration = category_calibration(category=category, now=now, days=days)
        if calibration is not None:
            report.append(calibration)
    return report


def verdict_features_list() -> list[dict]:
    """Return the shadow verdicts that kept the router's view of their request (hashed
    n-grams and signals, never the text), oldest first, for train_router --with-verdicts."""
    return list(
        QualityEvaluation.objects.exclude(features={})
        .order_by("created_at", "request_id")
        .values("request_id", "category", "complexity", "verdict", "features")
    )
