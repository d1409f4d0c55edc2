"""Reads of the routing policy and of the reports on its traffic. Nothing here writes.

The policy a worker routes with (`policy_get`, remembered per process and checked against the
shared cache's version number) and the published versions it comes from; the what-if replay
of the ledger under a draft, and the per-arm and per-router figures of the rollout pages.
A stored snapshot becomes engine values in routing.policy_snapshot; API keys are read in
routing.api_key_selectors.
"""

import logging
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, Q, Sum

from routing.engine import RoutingError
from routing.learned.model import ArtifactError
from routing.models import PolicyVersion, QualityEvaluation
from routing.policy import Policy, Tier
from routing.policy_snapshot import deep_merge, policy_from_snapshot
from routing.providers.compat import param_rules_from_snapshot, param_rules_set
from routing.rollout import experiment_split
from routing.shared_cache import RedisUnavailable, shared_cache
from routing.whatif import ReplayGroup, WhatIf, against_current, replay
from usage.models import Status, UsageRecord
from usage.selectors import replay_left_out

LATENCY_SAMPLE = 50_000

POLICY_VERSION_CACHE_KEY = "routing:policy:latest-version"

logger = logging.getLogger(__name__)
_memo_lock = threading.Lock()
_memo: dict[str, Policy] = {}
_checked_at: dict[str, float] = {}


def policy_get() -> Policy:
    """Return the latest policy as engine dataclasses.

    Each process keeps the policy in memory and checks the shared cache's version number at
    most every POLICY_REFRESH_S seconds, so an admin change reaches every worker within that
    time without a database read per request; the snapshot is read only when it changed.
    """
    cached = _memo.get("policy")
    now = time.monotonic()
    if cached is not None and now - _checked_at.get("policy", 0) < settings.POLICY_REFRESH_S:
        return cached
    latest_id = _latest_version_id()
    if cached is None or cached.version != latest_id:
        try:
            cached = _policy_load()
        except ArtifactError as error:
            # The new version's router cannot load here (a file deleted while running): keep
            # routing with the version this process had, and try again at the next check.
            cached = cached or _memo.get("previous")
            if cached is None:
                raise  # a process that never routed: the start-up check says the same
            logger.error("policy v%s not loaded, v%s kept: %s", latest_id, cached.version, error)
    with _memo_lock:
        _memo["policy"] = cached
        _checked_at["policy"] = now
    return cached


def _latest_version_id() -> int | None:
    try:
        latest_id = shared_cache().get(POLICY_VERSION_CACHE_KEY)
    except RedisUnavailable:  # skipped after a failure, logged where it failed
        latest_id = None
    except Exception:  # a cache outage must not stop routing: ask the database
        logger.warning("cache unavailable for the policy version; reading the database")
        latest_id = None
    if latest_id is None:
        latest_id = published_versions().values_list("id", flat=True).first()
    return latest_id


def published_versions():
    """Return policy versions that were published (drafts tried in experiments left out),
    newest first: the first one routes."""
    return PolicyVersion.objects.filter(draft=False).order_by("-id")


def _policy_load() -> Policy:
    latest = published_versions().values_list("id", "snapshot").first()
    if latest is None:
        raise RoutingError("no_policy", "No routing policy is configured: run seed_policy.")
    version, snapshot = latest
    try:
        shared_cache().set(POLICY_VERSION_CACHE_KEY, version, timeout=None)
    except RedisUnavailable:
        pass  # skipped after a failure, logged where it failed
    except Exception:
        logger.warning("cache unavailable; policy version not shared")
    policy = policy_from_snapshot(version=version, snapshot=snapshot)
    models = snapshot["models"]
    running = snapshot.get("experiment")
    if running:
        # Read once per version, like the rest: the request path only hashes the subject.
        treatment_snapshot = PolicyVersion.objects.get(pk=running["treatment_version"]).snapshot
        try:
            treatment = policy_from_snapshot(
                version=running["treatment_version"], snapshot=treatment_snapshot
            )
        except (KeyError, TypeError, ValueError, ArithmeticError, ArtifactError) as error:
            # A treatment that no longer loads must not stop routing: everyone on control.
            logger.error("experiment %s: treatment not loaded (%r)", running["id"], error)
            return _policy_with_rules(policy, models)
        policy = experiment_split(
            experiment_id=running["id"],
            percent=Decimal(running["treatment_percent"]),
            salt=running["salt"],
            control=policy,
            treatment=treatment,
        )
        models = {**treatment_snapshot["models"], **models}
    return _policy_with_rules(policy, models)


def _policy_with_rules(policy: Policy, models: dict) -> Policy:
    # The calls this process makes are shaped for the models of the policies it routes with.
    param_rules_set(param_rules_from_snapshot(models))
    return policy


def policy_cache_expire() -> None:
    """Make this process load the latest version at its next request (a new version was
    published), keeping the one it has for the case that the new one cannot load."""
    with _memo_lock:
        current = _memo.pop("policy", None)
        if current is not None:
            _memo["previous"] = current


def policy_cache_clear() -> None:
    """Forget this process's policy, so the next request reads the latest version."""
    with _memo_lock:
        _memo.clear()
        _checked_at.clear()
    param_rules_set({})


def replay_groups(
    *, start: datetime, end: datetime, category: str | None = None
) -> Iterator[ReplayGroup]:
    """The ledger as the what-if replay reads it: answered traffic (no cache hits, which
    cost nothing either way, no failures, no quality-assurance calls), grouped by what the
    engine decides on."""
    rows = UsageRecord.objects.filter(
        created_at__gte=start, created_at__lt=end, status=Status.OK, cache_hit=False, qa=False
    )
    if category is not None:
        rows = rows.filter(category=category)
    rows = (
        rows.values("category", "complexity", "reason_code")
        .annotate(
            requests=Count("id"),
            mini_requests=Count("id", filter=Q(tier=Tier.MINI)),
            input_tokens=Sum("input_tokens"),
            cached_tokens=Sum("cached_tokens"),
            output_tokens=Sum("output_tokens"),
            actual_cost_usd=Sum("cost_usd"),
        )
        .order_by()
    )
    return (ReplayGroup(**row) for row in rows.iterator(chunk_size=5000))


def whatif_report(*, draft: dict, days: int, now: datetime) -> WhatIf:
    """Return the last `days` of ledger re-decided under the current policy plus `draft`.

    A draft has the snapshot's shape, only with what changes, e.g.
    {"categories": {"strategy": {"full_from_complexity": 5}},
     "models": {"gpt-4o": {"input_per_mtok_usd": "2.00"}}, "rollout": {"routed_percent": "50"}}.
    Cache hits (which cost nothing either way) and failures are left out.
    """
    latest = published_versions().values_list("id", "snapshot").first()
    if latest is None:
        raise RoutingError("no_policy", "No routing policy is configured: run seed_policy.")
    try:
        policy = policy_from_snapshot(version=latest[0], snapshot=deep_merge(latest[1], draft))
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise RoutingError("invalid_draft", f"The draft does not fit the policy: {exc!r}") from exc
    groups = replay_groups(start=now - timedelta(days=days), end=now)
    return replay(groups=groups, policy=policy, days=days)


def whatif_compare(*, draft: dict, days: int, now: datetime) -> WhatIf:
    """Return the draft's replay of the last `days` beside the same requests under the current
    policy, what was billed for them, and the requests neither replays (the what-if page's
    figures, and `manage.py whatif`'s)."""
    return against_current(
        draft=whatif_report(draft=draft, days=days, now=now),
        current=whatif_report(draft={}, days=days, now=now),
        left_out=replay_left_out(start=now - timedelta(days=days), end=now),
    )


def rollout_arm_metrics(*, start: datetime, end: datetime) -> dict[str, dict]:
    """Return per arm: requests, cheap share, cost per 1,000, error rate, p50/p95 latency.

    Latency percentiles are over the latest LATENCY_SAMPLE rows of each arm in the window.
    """
    rows = UsageRecord.objects.filter(created_at__gte=start, created_at__lt=end, qa=False)
    metrics = ledger_metrics_by(rows, "arm")
    routed, control = metrics.get("routed"), metrics.get("control")
    if routed and control and control["cost_per_1k_usd"]:
        saving = 1 - routed["cost_per_1k_usd"] / control["cost_per_1k_usd"]
        routed["savings_vs_control_percent"] = (saving * 100).quantize(Decimal("0.1"))
    return metrics


def router_artifact_metrics(*, start: datetime, end: datetime) -> dict[str, dict]:
    """Return per router artifact (routed arm, decided by a router): the arm figures, and
    quality retained over the shadow verdicts of the requests it decided."""
    rows = UsageRecord.objects.filter(
        created_at__gte=start, created_at__lt=end, qa=False, arm="routed"
    ).exclude(router_artifact="")
    metrics = ledger_metrics_by(rows, "router_artifact")
    verdicts = (
        QualityEvaluation.objects.filter(created_at__gte=start, created_at__lt=end)
        .values("features__artifact")
        .annotate(
            judged=Count("id"),
            kept=Count("id", filter=Q(verdict__in=["cheap_better", "tie"])),
        )
    )
    for row in verdicts:
        found = metrics.get(row["features__artifact"])
        if found is not None and row["judged"]:
            found["judged"] = row["judged"]
            found["retained_percent"] = (Decimal(row["kept"]) * 100 / row["judged"]).quantize(
                Decimal("0.1")
            )
    return metrics


def ledger_metrics_by(rows, field: str) -> dict[str, dict]:
    """Return per value of `field`: requests, cheap share, error rate, cost, baseline, cost
    per 1,000 and p50/p95 latency (over the latest LATENCY_SAMPLE rows of each)."""
    totals = rows.values(field).annotate(
        requests=Count("id"),
        mini=Count("id", filter=Q(tier=Tier.MINI)),
        errors=Count("id", filter=~Q(status=Status.OK)),
        cost=Sum("cost_usd"),
        baseline=Sum("baseline_cost_usd"),
    )
    metrics = {}
    for row in totals.order_by(field):
        n = row["requests"]
        latencies = sorted(
            rows.filter(**{field: row[field]})
            .order_by("-created_at")
            .values_list("latency_ms", flat=True)[:LATENCY_SAMPLE]
        )
        metrics[row[field]] = {
            "requests": n,
            "mini_percent": (Decimal(row["mini"]) * 100 / n).quantize(Decimal("0.1")),
            "error_percent": (Decimal(row["errors"]) * 100 / n).quantize(Decimal("0.01")),
            "cost_usd": row["cost"],
            "baseline_cost_usd": row["baseline"],
            "cost_per_1k_usd": (row["cost"] * 1000 / n).quantize(Decimal("0.0001")),
            "p50_latency_ms": latencies[len(latencies) // 2] if latencies else None,
            "p95_latency_ms": latencies[int(len(latencies) * 0.95)] if latencies else None,
        }
    return metrics


def category_traffic_share(*, days: int, now: datetime) -> dict[str, Decimal]:
    """Return each category's share (percent) of the last `days` of traffic."""
    rows = (
        UsageRecord.objects.filter(
            created_at__gte=now - timedelta(days=days), created_at__lt=now, qa=False
        )
        .values("category")
        .annotate(n=Count("id"))
        .order_by()
    )
    counts = {row["category"]: row["n"] for row in rows}
    total = sum(counts.values())
    return {c: (Decimal(n) * 100 / total).quantize(Decimal("0.1")) for c, n in counts.items()}
