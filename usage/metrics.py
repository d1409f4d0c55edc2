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


class _Series:
    """The children of one label set, looked up once per process: labels() checks the names,
    turns the values into strings and takes a lock at each look-up, eight a call. Children
    the call does not touch are made when first needed, as labels() would (no idle series)."""

    def __init__(self, labels: tuple[str, str, str, str]) -> None:
        self.labels = labels
        self.requests = REQUESTS.labels(*labels)
        self.tokens: dict[str, Counter] = {}
        self.cost = COST.labels(*labels)
        self.baseline = BASELINE.labels(*labels)
        self.latency = LATENCY.labels(*labels)
        self.cache_hits: dict[str, Counter] = {}
        self.errors: Counter | None = None

    def token_counter(self, kind: str) -> Counter:
        counter = self.tokens.get(kind)
        if counter is None:
            counter = self.tokens[kind] = TOKENS.labels(*self.labels, kind)
        return counter

    def cache_hit_counter(self, kind: str) -> Counter:
        counter = self.cache_hits.get(kind)
        if counter is None:
            counter = self.cache_hits[kind] = CACHE_HITS.labels(*self.labels, kind)
        return counter

    def error_counter(self) -> Counter:
        if self.errors is None:
            self.errors = ERRORS.labels(*self.labels)
        return self.errors


_series: dict[tuple[str, str, str, str], _Series] = {}


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
    labels = (str(tier), str(category), str(model), str(status))  # as labels() makes them
    series = _series.get(labels)
    if series is None:
        series = _series[labels] = _Series(labels)
    series.requests.inc()
    tokens = {"input": input_tokens, "cached": cached_tokens, "output": output_tokens}
    # Only where reported: most models never write the cache or reason (no idle series).
    parts = {"cache_write": cache_write_tokens, "reasoning": reasoning_tokens}
    tokens.update({kind: count for kind, count in parts.items() if count})
    for kind, count in tokens.items():
        series.token_counter(kind).inc(count)
    series.cost.inc(float(cost_usd))
    series.baseline.inc(float(baseline_cost_usd))
    series.latency.observe(latency_ms / 1000)
    if cache_hit:
        series.cache_hit_counter("response").inc()
    if cached_tokens:
        series.cache_hit_counter("prompt").inc()
    if status != "ok":
        series.error_counter().inc()


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
