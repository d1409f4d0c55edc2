"""Routing's gauges, read from the shared stores when /metrics is scraped (so they are the
same in every worker): each model's circuit breaker, and the lost requests the in-flight sweep
could not record. Served with the ledger's metrics by huntaze.metrics."""

import time

from prometheus_client.core import GaugeMetricFamily

from routing.circuit import circuit_states
from routing.inflight import inflight_quarantined_count
from routing.models import ModelProfile
from routing.request_state_models import InFlightRequest


class CircuitCollector:
    """Each model's circuit breaker, read from the shared cache when scraped (so the same
    in every worker): 1 open, 0.5 half-open (probing), 0 closed."""

    VALUES = {"open": 1.0, "half-open": 0.5, "closed": 0.0}

    def collect(self):
        gauge = GaugeMetricFamily(
            "huntaze_circuit_open", "Circuit breaker per model (1 open).", labels=["model"]
        )
        names = list(ModelProfile.objects.filter(active=True).values_list("name", flat=True))
        for model, state in circuit_states(names, now=time.time()).items():
            if state in self.VALUES:
                gauge.add_metric([model], self.VALUES[state])
        yield gauge


class InFlightCollector:
    """Lost requests the in-flight sweep could not record (kept aside, skipped), read from
    the database and Redis when scraped: above 0, someone should look (admin: In-flight
    requests, quarantined)."""

    def collect(self):
        gauge = GaugeMetricFamily(
            "huntaze_inflight_quarantined",
            "Lost requests the in-flight sweep could not record (quarantined).",
        )
        in_table = InFlightRequest.objects.exclude(quarantined_at=None).count()
        gauge.add_metric([], in_table + inflight_quarantined_count())
        yield gauge
