"""Migration assistant reads: shutdowns ahead, the last days re-priced on a successor, and
what shadow qualification has found so far."""

from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, Q, Sum
from django.db.models.functions import Coalesce

from huntaze.money import ZERO
from routing.model_migration_models import OPEN_STATES, MigrationState, ModelMigration
from routing.models import ModelProfile, TaskCategory, Tier
from routing.quality import Retained, at_least_as_good
from routing.selectors import policy_get, replay_groups
from routing.whatif import CategoryProjection, against_current, replay
from usage.models import UsageRecord

REPRICE_DAYS = 30


@dataclass(frozen=True)
class Shutdown:
    model: ModelProfile
    days_left: int
    categories: list[str]  # enabled categories still on it (either tier)
    migration: ModelMigration | None


def shutdowns_ahead(*, today: date) -> list[Shutdown]:
    """Return every active model with a shutdown date, soonest first, with the categories
    still on it and its open migration, if any."""
    open_by_model = {
        m.old_model_id: m
        for m in ModelMigration.objects.filter(state__in=OPEN_STATES).select_related("successor")
    }
    users: dict[int, list[str]] = {}
    for slug, mini_id, full_id in TaskCategory.objects.filter(enabled=True).values_list(
        "slug", "mini_model_id", "full_model_id"
    ):
        for model_id in {mini_id, full_id}:
            users.setdefault(model_id, []).append(slug)
    models = ModelProfile.objects.filter(active=True, shutdown_on__isnull=False)
    return [
        Shutdown(
            model=model,
            days_left=(model.shutdown_on - today).days,
            categories=sorted(users.get(model.pk, [])),
            migration=open_by_model.get(model.pk),
        )
        for model in models.order_by("shutdown_on", "name")
    ]


def successor_choices(*, model: ModelProfile) -> list[ModelProfile]:
    """Return the models of the same tier that could take over from `model` (an inactive one
    is activated when traffic first moves to it)."""
    return list(ModelProfile.objects.filter(tier=model.tier).exclude(pk=model.pk).order_by("name"))


@dataclass(frozen=True)
class Repricing:
    """The last `days` of the moving categories: billed, replayed under today's policy, and
    replayed with the successor in the old model's place (per category and in total)."""

    days: int
    categories: list[CategoryProjection]
    total: CategoryProjection

    @property
    def change_monthly_usd(self) -> Decimal:
        return (self.total.change_usd * 30 / self.days).quantize(Decimal("0.01"))


def migration_repricing(
    *, old_model: ModelProfile, successor: ModelProfile, categories: list[str], now: datetime
) -> Repricing:
    """Return the last 30 days of `categories` that were billed on the old model's tier,
    replayed under today's policy and with the successor in the old model's slot.

    The one place the migration assistant prices a successor (the what-if replay; the price
    book's rules replace the model's three prices here when it lands). Requests billed on the
    other tier do not move and are left out, so each column is the moving traffic alone."""
    policy = policy_get()
    target = policy.models[successor.name]
    slot = "mini" if old_model.tier == Tier.MINI else "full"
    moved = {
        slug: replace(rule, **{slot: target})
        for slug, rule in policy.categories.items()
        if slug in categories
    }
    groups = [
        group
        for group in replay_groups(start=now - timedelta(days=REPRICE_DAYS), end=now)
        if group.category in moved
        and group.mini_requests == (group.requests if slot == "mini" else 0)
    ]
    draft = replace(policy, categories={**policy.categories, **moved})
    whatif = against_current(
        draft=replay(groups=groups, policy=draft, days=REPRICE_DAYS),
        current=replay(groups=groups, policy=policy, days=REPRICE_DAYS),
        left_out={},
    )
    return Repricing(days=REPRICE_DAYS, categories=whatif.categories, total=whatif.total)


@dataclass(frozen=True)
class CategoryQualification:
    category: str
    retained: Retained
    verdicts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Qualification:
    migration: ModelMigration
    categories: list[CategoryQualification]
    overall: Retained
    qa_cost_usd: Decimal
    qa_calls: int
    min_samples: int
    sandbox: bool

    @property
    def status(self) -> str:
        """not started, collecting, below floor (some category), or qualified."""
        if self.migration.state == MigrationState.DRAFT and not self.overall.n:
            return "not started"
        if any(c.retained.below_floor for c in self.categories):
            return "below floor"
        if any(not c.retained.enough for c in self.categories):
            return "collecting"
        return "qualified"


def qualification_results(*, migration: ModelMigration) -> Qualification:
    """Return quality retained per moving category (the successor's answers at least as good
    as today's, Wilson 95% interval, against the category's floor) and the QA spend."""
    min_samples = settings.QUALITY_MIN_SAMPLES
    floors = dict(
        TaskCategory.objects.filter(slug__in=migration.categories).values_list(
            "slug", "quality_floor_percent"
        )
    )
    tallies: dict[str, dict[str, int]] = {slug: {} for slug in migration.categories}
    for row in migration.verdicts.values("category", "verdict").annotate(n=Count("id")):
        tallies.setdefault(row["category"], {})[row["verdict"]] = row["n"]

    def retained(verdicts: dict[str, int], floor: Decimal | None) -> Retained:
        good = sum(n for verdict, n in verdicts.items() if at_least_as_good(verdict))
        return Retained(
            good=good, n=sum(verdicts.values()), floor_percent=floor, min_samples=min_samples
        )

    categories = [
        CategoryQualification(slug, retained(verdicts, floors.get(slug)), verdicts)
        for slug, verdicts in sorted(tallies.items())
    ]
    everything: dict[str, int] = {}
    for verdicts in tallies.values():
        for verdict, n in verdicts.items():
            everything[verdict] = everything.get(verdict, 0) + n
    spend = UsageRecord.objects.filter(qa=True, metadata__qualification=migration.pk).aggregate(
        cost=Coalesce(Sum("cost_usd"), ZERO),
        calls=Count("id"),
        sandbox=Count("id", Q(sandbox=True)),
    )
    return Qualification(
        migration=migration,
        categories=categories,
        overall=retained(everything, None),
        qa_cost_usd=spend["cost"],
        qa_calls=spend["calls"],
        min_samples=min_samples,
        sandbox=spend["sandbox"] > 0,
    )


def migrations_recent(*, limit: int = 20) -> list[ModelMigration]:
    """Return the latest migrations, open ones first."""
    rows = ModelMigration.objects.select_related(
        "old_model", "successor", "switched_version", "experiment"
    )
    return sorted(rows[:limit], key=lambda m: (not m.is_open, -m.pk))
