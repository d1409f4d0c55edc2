from celery import shared_task
from django.utils import timezone

from routing.services import idempotency_purge, inflight_sweep


@shared_task
def inflight_sweep_run() -> int:
    """Record requests of lost workers as abandoned."""
    return inflight_sweep(now=timezone.now())


@shared_task
def idempotency_purge_run() -> int:
    """Delete Idempotency-Keys past their 24 hours."""
    return idempotency_purge(now=timezone.now())
