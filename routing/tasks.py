from celery import shared_task
from django.utils import timezone

from routing.services import inflight_sweep


@shared_task
def inflight_sweep_run() -> int:
    """Record requests of lost workers as abandoned."""
    return inflight_sweep(now=timezone.now())
