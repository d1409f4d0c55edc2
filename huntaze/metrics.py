"""/metrics: every app's Prometheus metrics in one exposition, merged across workers.

With PROMETHEUS_MULTIPROC_DIR set in the environment before start-up, prometheus-client
keeps each worker's counters in files there and this merges every worker's files, so the
numbers are right behind gunicorn or several uvicorn workers. The gauges are read from the
shared stores when scraped. The project composes the apps' parts here, so that neither app
imports the other's metrics.
"""

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)

from routing.metrics import CircuitCollector, InFlightCollector
from usage.metrics import ReconciliationCollector


def metrics_render(*, multiprocess_dir: str) -> tuple[bytes, str]:
    """Return the exposition text and its content type, merged across workers when needed."""
    if multiprocess_dir:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=multiprocess_dir)
    else:
        registry = REGISTRY
    scraped = CollectorRegistry()  # read from the shared stores, the same in every worker
    scraped.register(CircuitCollector())
    scraped.register(InFlightCollector())
    scraped.register(ReconciliationCollector())
    return generate_latest(registry) + generate_latest(scraped), CONTENT_TYPE_LATEST
