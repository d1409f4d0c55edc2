"""Reconciliation of the ledger with the provider's bill, per UTC day and model.

The provider's figures come from its usage export (provider_usage_fetch) or a CSV of its bill
(provider_usage_import); provider_usage_reconcile compares them with the ledger and stores one
Reconciliation row per day and model. These services are the only writers of ProviderUsage
and Reconciliation; the selectors at the end only read.
"""

import logging
import re
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Q, Sum
from django.db.models.functions import Coalesce, TruncDate

from usage.models import Status, UsageRecord
from usage.provider_export import OpenAIUsageClient, ProviderDay, provider_usage_csv_parse
from usage.reconciliation_models import (
    ProviderUsage,
    ProviderUsageSource,
    Reconciliation,
    ReconciliationStatus,
)

logger = logging.getLogger(__name__)

# A dated snapshot ("gpt-4o-mini-2024-07-18") is what the provider bills for the alias we ask.
SNAPSHOT_SUFFIX = re.compile(r"-\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class Figures:
    """One side's totals for a day and model."""

    requests: int = 0
    input_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = Decimal("0")

    def __add__(self, other: "Figures") -> "Figures":
        return Figures(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in FIELDS})


FIELDS = fields(Figures)
DIFFERENCE_FIELD = {f.name: f"{f.name}_difference" for f in FIELDS} | {
    "cost_usd": "cost_difference_usd"
}


@dataclass(frozen=True)
class Comparison:
    """One day and model compared: differences are provider minus ledger."""

    status: str
    differences: dict[str, int | Decimal]
    max_difference_percent: Decimal
    differing: list[str]


def _percent(ledger: int | Decimal, provider: int | Decimal) -> Decimal:
    if ledger == provider:
        return Decimal("0")
    if ledger == 0:  # something billed that we have nothing of: all of it differs
        return Decimal("100")
    return (abs(Decimal(provider) - Decimal(ledger)) * 100 / abs(Decimal(ledger))).quantize(
        Decimal("0.0001")
    )


def reconciliation_compare(
    *, ledger: Figures | None, provider: Figures | None, tolerance_percent: Decimal
) -> Comparison:
    """Return the status and differences (provider minus ledger) of one day and model."""
    left, right = ledger or Figures(), provider or Figures()
    differences = {f.name: getattr(right, f.name) - getattr(left, f.name) for f in FIELDS}
    percents = {f.name: _percent(getattr(left, f.name), getattr(right, f.name)) for f in FIELDS}
    differing = [name for name, percent in percents.items() if percent > tolerance_percent]
    if provider is None:
        status = ReconciliationStatus.MISSING_PROVIDER
    elif ledger is None:
        status = ReconciliationStatus.MISSING_LEDGER
    else:
        status = ReconciliationStatus.MISMATCH if differing else ReconciliationStatus.OK
    return Comparison(
        status=status,
        differences=differences,
        max_difference_percent=max(percents.values()),
        differing=differing,
    )


def ledger_daily_figures(*, start: date, end: date) -> dict[tuple[date, str], Figures]:
    """Return the ledger's billed calls per UTC day and model, days start..end included.

    Billed means the provider was called and charged: response-cache hits never reached it,
    and failed calls cost nothing (a cancelled stream that was billed has a cost). Cache
    writes are both lifetimes together, as providers' exports count them."""
    rows = (
        UsageRecord.objects.filter(
            created_at__gte=_midnight(start), created_at__lt=_midnight(end + timedelta(days=1))
        )
        .filter(Q(cache_hit=False) & (Q(status=Status.OK) | Q(cost_usd__gt=0)))
        .annotate(day=TruncDate("created_at", tzinfo=UTC))
        .values("day", "model")
        .annotate(
            n=Count("id"),
            input_sum=Coalesce(Sum("input_tokens"), 0),
            cached_sum=Coalesce(Sum("cached_tokens"), 0),
            write_sum=Coalesce(Sum(F("cache_write_5m_tokens") + F("cache_write_1h_tokens")), 0),
            output_sum=Coalesce(Sum("output_tokens"), 0),
            cost_sum=Coalesce(Sum("cost_usd"), Decimal("0")),
        )
    )
    return {
        (row["day"], row["model"]): Figures(
            requests=row["n"],
            input_tokens=row["input_sum"],
            cached_tokens=row["cached_sum"],
            cache_write_tokens=row["write_sum"],
            output_tokens=row["output_sum"],
            cost_usd=row["cost_sum"],
        )
        for row in rows
    }


def provider_daily_figures(
    *, start: date, end: date, ledger_models: set[tuple[date, str]]
) -> dict[tuple[date, str], Figures]:
    """Return the provider's figures per day and model, a dated snapshot counted under the
    alias the ledger uses that day (when the ledger has the alias and not the snapshot)."""
    figures: dict[tuple[date, str], Figures] = {}
    for row in ProviderUsage.objects.filter(day__gte=start, day__lte=end):
        model = row.model
        alias = SNAPSHOT_SUFFIX.sub("", model)
        if (row.day, model) not in ledger_models and (row.day, alias) in ledger_models:
            model = alias
        key = (row.day, model)
        figures[key] = figures.get(key, Figures()) + Figures(
            **{f.name: getattr(row, f.name) for f in FIELDS}
        )
    return figures


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def provider_usage_reconcile(*, start: date, end: date, now: datetime) -> list[Reconciliation]:
    """Compare the ledger with the provider for the days start..end; return the stored rows."""
    tolerance = settings.RECONCILE_TOLERANCE_PERCENT
    ledger = ledger_daily_figures(start=start, end=end)
    provider = provider_daily_figures(start=start, end=end, ledger_models=set(ledger))
    stored = []
    keys = ledger.keys() | provider.keys()
    with transaction.atomic():
        previous = Reconciliation.objects.filter(day__gte=start, day__lte=end)
        stale = [pk for pk, day, model in previous.values_list("pk", "day", "model")
                 if (day, model) not in keys]  # fmt: skip
        Reconciliation.objects.filter(pk__in=stale).delete()
        for day, model in sorted(keys):
            ours, theirs = ledger.get((day, model)), provider.get((day, model))
            comparison = reconciliation_compare(
                ledger=ours, provider=theirs, tolerance_percent=tolerance
            )
            values = {"status": comparison.status, "reconciled_at": now}
            for f in FIELDS:
                values[f"ledger_{f.name}"] = getattr(ours or Figures(), f.name)
                values[f"provider_{f.name}"] = getattr(theirs or Figures(), f.name)
                values[DIFFERENCE_FIELD[f.name]] = comparison.differences[f.name]
            values["max_difference_percent"] = comparison.max_difference_percent
            values["differing"] = ", ".join(comparison.differing)
            row, _ = Reconciliation.objects.update_or_create(day=day, model=model, defaults=values)
            stored.append(row)
    mismatches = [row for row in stored if row.alert]
    if mismatches:
        logger.warning(
            "reconciliation: %d day/model(s) differ from the provider's bill: %s",
            len(mismatches),
            ", ".join(f"{row.day} {row.model} {row.status}" for row in mismatches[:10]),
        )
    return stored


def _provider_usage_store(
    *, days: list[ProviderDay], source: str, now: datetime, replace: tuple[date, date] | None
) -> int:
    if replace is not None:  # a day the export no longer reports must not linger
        ProviderUsage.objects.filter(
            source=source, day__gte=replace[0], day__lte=replace[1]
        ).delete()
    for row in days:
        ProviderUsage.objects.update_or_create(
            day=row.day,
            model=row.model,
            defaults={
                "provider": row.provider,
                "requests": row.requests,
                "input_tokens": row.input_tokens,
                "cached_tokens": row.cached_tokens,
                "cache_write_tokens": row.cache_write_tokens,
                "output_tokens": row.output_tokens,
                "cost_usd": row.cost_usd,
                "source": source,
                "imported_at": now,
            },
        )
    return len(days)


def provider_export_configured() -> bool:
    """Return whether a provider usage export is configured to be read."""
    return bool(settings.PROVIDER_USAGE_BASE_URL)


def provider_usage_fetch(*, start: date, end: date, now: datetime) -> int:
    """Read the OpenAI usage and costs exports of start..end and store them; return the rows.

    Raises ProviderExportError when the export cannot be read (nothing is changed then)."""
    client = OpenAIUsageClient(
        base_url=settings.PROVIDER_USAGE_BASE_URL,
        admin_key=settings.OPENAI_ADMIN_KEY,
        timeout_s=settings.PROVIDER_USAGE_TIMEOUT_S,
    )
    try:
        days = client.days(start=start, end=end)
    finally:
        client.close()
    with transaction.atomic():
        return _provider_usage_store(
            days=days, source=ProviderUsageSource.OPENAI_EXPORT, now=now, replace=(start, end)
        )


@dataclass(frozen=True)
class ImportResult:
    rows: int
    start: date
    end: date
    mismatches: int


def provider_usage_import(*, content: str, now: datetime) -> ImportResult:
    """Store a CSV of a provider's bill and reconcile its days, in one transaction.

    Raises ProviderUsageImportError (every bad row named) before anything is written."""
    days = provider_usage_csv_parse(content)
    start, end = min(row.day for row in days), max(row.day for row in days)
    with transaction.atomic():
        count = _provider_usage_store(
            days=days, source=ProviderUsageSource.CSV_IMPORT, now=now, replace=None
        )
        stored = provider_usage_reconcile(start=start, end=end, now=now)
    return ImportResult(
        rows=count, start=start, end=end, mismatches=sum(row.alert for row in stored)
    )


def provider_usage_reconcile_range(
    *, start: date, end: date, now: datetime, fetch: bool = True
) -> dict[str, int]:
    """Fetch the export of start..end (when one is configured and asked) and reconcile it."""
    fetched = provider_usage_fetch(start=start, end=end, now=now) if fetch else 0
    stored = provider_usage_reconcile(start=start, end=end, now=now)
    return {
        "fetched": fetched,
        "reconciled": len(stored),
        "mismatches": sum(row.alert for row in stored),
    }


def provider_usage_reconcile_recent(*, now: datetime) -> dict[str, int]:
    """The beat's daily run: yesterday and RECONCILE_DAYS_BACK days before it. Without an
    export and without any imported bill there is nothing to compare: nothing is done."""
    end = now.astimezone(UTC).date() - timedelta(days=1)
    start = end - timedelta(days=settings.RECONCILE_DAYS_BACK - 1)
    configured = provider_export_configured()
    if not configured and not ProviderUsage.objects.exists():
        logger.info("reconciliation skipped: no provider export configured, no bill imported")
        return {"fetched": 0, "reconciled": 0, "mismatches": 0}
    return provider_usage_reconcile_range(start=start, end=end, now=now, fetch=configured)


# --- selectors -------------------------------------------------------------------------------


def reconciliation_alerts(*, now: datetime) -> list[Reconciliation]:
    """Return the mismatched or one-sided days and models of the last RECONCILE_ALERT_DAYS."""
    since = now.astimezone(UTC).date() - timedelta(days=settings.RECONCILE_ALERT_DAYS)
    return list(
        Reconciliation.objects.filter(day__gte=since)
        .exclude(status=ReconciliationStatus.OK)
        .order_by("-day", "model")
    )


def reconciliation_alert_counts(*, now: datetime) -> dict[str, int]:
    """Return the number of alerting days and models per status (every status, 0 included)."""
    counts = dict.fromkeys(
        (s for s in ReconciliationStatus.values if s != ReconciliationStatus.OK), 0
    )
    for row in reconciliation_alerts(now=now):
        counts[row.status] += 1
    return counts
