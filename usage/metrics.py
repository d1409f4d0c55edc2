"""Prometheus metrics of routed calls, fed by usage_record(), and the reconciliation gauge;
served at /metrics with routing's own (huntaze.metrics).

With PROMETHEUS_MULTIPROC_DIR set in the environment before start-up, prometheus-client
keeps each worker's values in files there and /metrics merges every worker's files, so the
numbers are right behind gunicorn or several uvicorn workers. Values are float64: this is
monitoring; the ledger stays the record of money.
"""

from decimal import Decimal

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

LABELS = ["tier", "category", "model", "status"]
LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 7.5, 10, 20, 30, 60)

REQUESTS = Counter("huntaze_llm_requests", "Routed model calls (ledger rows).", LABELS)
TOKENS = Counter(
    "huntaze_llm_tokens",
    "Tokens by kind (input, cached, output; cache_write and reasoning, parts of input and "
    "output, where models report them).",
    [*LABELS, "kind"],
)
COST = Counter("huntaze_llm_cost_usd", "Billed cost in USD.", LABELS)
BASELINE = Counter("huntaze_llm_baseline_cost_usd", "All-premium uncached cost in USD.", LABELS)
CACHE_HITS = Counter(
    "huntaze_llm_cache_hits",
    "Response-cache hits and provider prompt-cache hits (calls with cached input tokens).",
    [*LABELS, "kind"],
)
ERRORS = Counter("huntaze_llm_errors", "Calls that did not end ok, by status.", LABELS)
LATENCY = Histogram(
    "huntaze_llm_latency_seconds", "Call latency.", LABELS, buckets=LATENCY_BUCKETS_S
)


def call_observe(
    *,
    tier: str,
    category: str,
    model: str,
    status: str,
    input_tokens: int,
    cached_tokens: int,
    output_tokens: int,
    latency_ms: int,
    cost_usd: Decimal,
    baseline_cost_usd: Decimal,
    cache_hit: bool,
    cache_write_tokens: int = 0,
    reasoning_tokens: int = 0,
) -> None:
    """Count one ledger row in the metrics."""
    labels = {"tier": tier, "category": category, "model": model, "status": status}
    REQUESTS.labels(**labels).inc()
    tokens = {"input": input_tokens, "cached": cached_tokens, "output": output_tokens}
    # Only where reported: most models never write the cache or reason (no idle series).
    parts = {"cache_write": cache_write_tokens, "reasoning": reasoning_tokens}
    tokens.update({kind: count for kind, count in parts.items() if count})
    for kind, count in tokens.items():
        TOKENS.labels(**labels, kind=kind).inc(count)
    COST.labels(**labels).inc(float(cost_usd))
    BASELINE.labels(**labels).inc(float(baseline_cost_usd))
    LATENCY.labels(**labels).observe(latency_ms / 1000)
    if cache_hit:
        CACHE_HITS.labels(**labels, kind="response").inc()
    if cached_tokens:
        CACHE_HITS.labels(**labels, kind="prompt").inc()
    if status != "ok":
        ERRORS.labels(**labels).inc()


class ReconciliationCollector:
    """Days and models of the last RECONCILE_ALERT_DAYS whose provider bill does not match the
    ledger, per status, read from the database when scraped: above 0, the bill needs a look
    (admin: Reconciliations)."""

    def collect(self):
        # Imported when scraped, not with this module: a worker counts calls (call_observe)
        # before Django's apps are loaded, and these are models.
        from django.utils import timezone

        from usage.reconciliation import reconciliation_alert_counts

        gauge = GaugeMetricFamily(
            "huntaze_reconciliation_mismatches",
            "Days and models whose provider bill differs from the ledger (or is on one side).",
            labels=["status"],
        )
        for status, count in reconciliation_alert_counts(now=timezone.now()).items():
            gauge.add_metric([status], count)
        yield gauge
