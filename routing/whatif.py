"""What-if replay: re-decide recorded traffic under a draft policy. Pure (no Django).

The ledger is read as groups of identical features (category, complexity, reason, token sums),
so a month of a million rows is a few thousand groups: the engine decides each group once.
The rollout share is applied as an expected value (assignment hashes are uniform).

A draft is judged against the same traffic replayed under the current policy, not against
what was billed: traffic that ran under other settings (the control arm of an earlier, smaller
rollout, an older threshold) would otherwise show up as the draft's saving. Cache hits and
failures are not replayed (they cost nothing either way): they are counted apart.
"""

from collections.abc import Iterable
from dataclasses import dataclass, replace
from decimal import Decimal

from routing.engine import decide
from routing.policy import ModelSpec, Policy, Tier
from routing.pricing import TokenUsage, price_tokens

DAYS_PER_MONTH = Decimal(30)


@dataclass(frozen=True)
class ReplayGroup:
    category: str
    complexity: float
    reason_code: str
    requests: int
    mini_requests: int
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    actual_cost_usd: Decimal


@dataclass(frozen=True)
class LeftOut:
    """A category's requests the replay does not re-decide."""

    cache_hits: int = 0  # answered by our response cache: no call, no cost either way
    failed: int = 0  # failed calls (billed nothing)


@dataclass
class CategoryProjection:
    category: str
    requests: int = 0  # replayed: answered by a model
    actual_mini_requests: Decimal = Decimal(0)
    projected_mini_requests: Decimal = Decimal(0)
    actual_cost_usd: Decimal = Decimal(0)
    projected_cost_usd: Decimal = Decimal(0)
    current_mini_requests: Decimal = Decimal(0)  # the same requests under the current policy
    current_cost_usd: Decimal = Decimal(0)
    cache_hits: int = 0
    failed: int = 0

    @property
    def delta_usd(self) -> Decimal:
        return self.projected_cost_usd - self.actual_cost_usd

    @property
    def change_usd(self) -> Decimal:
        """What the draft itself changes: projected against the current policy's replay."""
        return self.projected_cost_usd - self.current_cost_usd

    @property
    def current_mini_percent(self) -> Decimal:
        return _percent(self.current_mini_requests, self.requests)

    @property
    def actual_mini_percent(self) -> Decimal:
        return _percent(self.actual_mini_requests, self.requests)

    @property
    def projected_mini_percent(self) -> Decimal:
        return _percent(self.projected_mini_requests, self.requests)


@dataclass(frozen=True)
class WhatIf:
    days: int
    total: CategoryProjection
    categories: list[CategoryProjection]

    @property
    def actual_monthly_usd(self) -> Decimal:
        return (self.total.actual_cost_usd * DAYS_PER_MONTH / self.days).quantize(Decimal("0.01"))

    @property
    def projected_monthly_usd(self) -> Decimal:
        monthly = self.total.projected_cost_usd * DAYS_PER_MONTH / self.days
        return monthly.quantize(Decimal("0.01"))

    @property
    def current_monthly_usd(self) -> Decimal:
        monthly = self.total.current_cost_usd * DAYS_PER_MONTH / self.days
        return monthly.quantize(Decimal("0.01"))

    @property
    def change_monthly_usd(self) -> Decimal:
        return self.projected_monthly_usd - self.current_monthly_usd


def _percent(part: Decimal, whole: int) -> Decimal:
    return (Decimal(part) * 100 / whole).quantize(Decimal("0.1")) if whole else Decimal("0.0")


def _group_cost(model: ModelSpec, group: ReplayGroup) -> Decimal:
    """The group's tokens at the model's prices of today (the whole price book's rules, the
    group's tokens summed: a long-context surcharge is per request, so not in a replay)."""
    usage = TokenUsage(group.input_tokens, group.output_tokens, cached_tokens=group.cached_tokens)
    return price_tokens(model.list_price, usage).total_usd


def _critical_by(reason_code: str) -> str | None:
    if reason_code.startswith("critical:caller"):
        return "caller"
    if reason_code.startswith("critical:trigger"):
        return "trigger"
    return None  # always-full categories are re-decided from the draft's rule


def replay(*, groups: Iterable[ReplayGroup], policy: Policy, days: int) -> WhatIf:
    """Return actual against projected cost and cheap-tier share under `policy`."""
    routed_share = policy.routed_percent / 100
    per_category: dict[str, CategoryProjection] = {}
    for group in groups:
        row = per_category.setdefault(group.category, CategoryProjection(group.category))
        row.requests += group.requests
        row.actual_mini_requests += group.mini_requests
        row.actual_cost_usd += group.actual_cost_usd
        rule = policy.categories.get(group.category)
        if rule is None or group.reason_code.startswith("pinned:"):
            # A pinned model, or a category the draft no longer has: unchanged.
            row.projected_mini_requests += group.mini_requests
            row.projected_cost_usd += group.actual_cost_usd
            continue
        choice = decide(
            rule=rule, complexity=group.complexity, critical_by=_critical_by(group.reason_code)
        )
        routed_model = rule.full if choice.tier is Tier.FULL else rule.mini
        routed_cost = _group_cost(routed_model, group)
        control_cost = _group_cost(rule.full, group)
        row.projected_cost_usd += routed_share * routed_cost + (1 - routed_share) * control_cost
        if choice.tier is Tier.MINI:
            row.projected_mini_requests += routed_share * group.requests
    total = CategoryProjection("TOTAL")
    for row in per_category.values():
        total.requests += row.requests
        total.actual_mini_requests += row.actual_mini_requests
        total.projected_mini_requests += row.projected_mini_requests
        total.actual_cost_usd += row.actual_cost_usd
        total.projected_cost_usd += row.projected_cost_usd
    ordered = sorted(per_category.values(), key=lambda r: (-r.requests, r.category))
    return WhatIf(days=days, total=total, categories=ordered)


def against_current(*, draft: WhatIf, current: WhatIf, left_out: dict[str, LeftOut]) -> WhatIf:
    """Return the draft's projection with, per category, the same traffic replayed under the
    current policy and the requests neither replays (cache hits, failures)."""
    currents = {row.category: row for row in current.categories}
    rows = {row.category: replace(row) for row in draft.categories}
    for slug in left_out:
        rows.setdefault(slug, CategoryProjection(slug))
    total = replace(draft.total, current_cost_usd=Decimal(0), current_mini_requests=Decimal(0))
    for slug, row in rows.items():
        now = currents.get(slug)
        if now is not None:
            row.current_cost_usd = now.projected_cost_usd
            row.current_mini_requests = now.projected_mini_requests
        skipped = left_out.get(slug, LeftOut())
        row.cache_hits, row.failed = skipped.cache_hits, skipped.failed
        total.current_cost_usd += row.current_cost_usd
        total.current_mini_requests += row.current_mini_requests
        total.cache_hits += row.cache_hits
        total.failed += row.failed
    ordered = sorted(rows.values(), key=lambda r: (-r.requests, -r.cache_hits, r.category))
    return WhatIf(days=draft.days, total=total, categories=ordered)
