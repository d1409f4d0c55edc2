"""Celery tasks: one service call each; arguments are strings and ints."""

from celery import shared_task
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from usage.reconciliation import provider_usage_reconcile_recent
from usage.services import (
    monthly_report_create,
    monthly_report_create_previous,
    usage_rollup_rebuild,
    usage_rollup_refresh,
    usage_text_purge,
)


@shared_task
def usage_rollup_refresh_recent() -> dict[str, int]:
    """Rebuild the rollups of the last minutes; the beat runs it every minute."""
    return usage_rollup_refresh()


@shared_task
def usage_rollup_rebuild_window(start: str, end: str) -> dict[str, int]:
    """Rebuild the rollups of any past window, given as ISO 8601 datetimes with offsets."""
    return usage_rollup_rebuild(start=parse_datetime(start), end=parse_datetime(end))


@shared_task
def monthly_report_generate(year: int, month: int) -> list[int]:
    """Store (or return the stored) report files of one closed month."""
    return [report.id for report in monthly_report_create(year=year, month=month)]


@shared_task
def monthly_report_generate_previous() -> list[int]:
    """Store last month's report files; the beat runs it on the 1st."""
    return [report.id for report in monthly_report_create_previous()]


@shared_task
def usage_text_purge_old() -> int:
    """Blank stored prompt and answer text past its retention."""
    return usage_text_purge(now=timezone.now())


@shared_task
def provider_usage_reconcile_recent_days() -> dict[str, int]:
    """Fetch the provider's export of the last days and reconcile it; the beat runs it daily."""
    return provider_usage_reconcile_recent(now=timezone.now())
