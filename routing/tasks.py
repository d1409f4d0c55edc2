from celery import shared_task
from django.utils import timezone

from routing.batch_results import provider_batch_poll
from routing.batches import provider_batch_submit_run, provider_batches_due
from routing.gateway.admission import inflight_sweep
from routing.gateway.idempotency import idempotency_purge

# The two tasks a service queues itself are defined beside it; listed here with the rest.
from routing.shadow import quality_shadow_evaluate  # noqa: F401


@shared_task
def inflight_sweep_run() -> int:
    """Record requests of lost workers as abandoned."""
    return inflight_sweep(now=timezone.now())


@shared_task
def idempotency_purge_run() -> int:
    """Delete Idempotency-Keys past their 24 hours."""
    return idempotency_purge(now=timezone.now())


@shared_task
def provider_batch_poll_run(provider_batch_id: int) -> str:
    """Poll one provider batch, if due, and collect it once final."""
    return provider_batch_poll(provider_batch_id=provider_batch_id, now=timezone.now())


@shared_task
def batch_advance_due() -> dict:
    """The beat's sweep: queue the submissions and polls that are due (state in the DB)."""
    due = provider_batches_due(now=timezone.now())
    for provider_batch_id in due["submit"]:
        provider_batch_submit_run.delay(provider_batch_id)
    for provider_batch_id in due["poll"]:
        provider_batch_poll_run.delay(provider_batch_id)
    return due
