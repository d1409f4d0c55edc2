"""Prometheus metrics: what one call adds, and the merge across worker processes."""

import os
import subprocess
import sys
from decimal import Decimal

import pytest
from django.conf import settings as django_settings
from prometheus_client import REGISTRY

from usage.metrics import call_observe


def test_one_call_adds_its_tokens_cost_latency_and_cache_hits():
    # given
    labels = {"tier": "mini", "category": "unit", "model": "m-unit", "status": "ok"}

    def sample(name: str, **extra) -> float:
        return REGISTRY.get_sample_value(name, {**labels, **extra}) or 0.0

    before = {
        "requests": sample("huntaze_llm_requests_total"),
        "cached": sample("huntaze_llm_tokens_total", kind="cached"),
        "cost": sample("huntaze_llm_cost_usd_total"),
        "fast": sample("huntaze_llm_latency_seconds_bucket", le="0.25"),
        "hits": sample("huntaze_llm_cache_hits_total", kind="response"),
        "reasoning": sample("huntaze_llm_tokens_total", kind="reasoning"),
    }
    # when
    call_observe(
        **labels,
        input_tokens=100,
        cached_tokens=64,
        output_tokens=20,
        latency_ms=200,
        cost_usd=Decimal("0.5"),
        baseline_cost_usd=Decimal("2"),
        cache_hit=True,
        reasoning_tokens=12,
    )
    # then
    assert sample("huntaze_llm_requests_total") == before["requests"] + 1
    assert sample("huntaze_llm_tokens_total", kind="cached") == before["cached"] + 64
    assert sample("huntaze_llm_cost_usd_total") == before["cost"] + 0.5
    assert sample("huntaze_llm_latency_seconds_bucket", le="0.25") == before["fast"] + 1
    assert sample("huntaze_llm_cache_hits_total", kind="response") == before["hits"] + 1
    assert sample("huntaze_llm_tokens_total", kind="reasoning") == before["reasoning"] + 12
    assert (
        REGISTRY.get_sample_value("huntaze_llm_tokens_total", {**labels, "kind": "cache_write"})
        is None
    )  # none reported: no series


def test_a_call_makes_only_the_series_it_counts_in_and_repeats_reuse_them():
    # given a label set never seen before
    labels = {"tier": "mini", "category": "unit", "model": "m-series", "status": "ok"}
    counts = dict(input_tokens=10, cached_tokens=0, output_tokens=2, latency_ms=40)
    money = dict(cost_usd=Decimal("0.25"), baseline_cost_usd=Decimal("1"), cache_hit=False)
    # when two ok calls without cache hits are counted
    call_observe(**labels, **counts, **money)
    call_observe(**labels, **counts, **money)
    # then both are counted, and no error or cache-hit series appears for them
    assert REGISTRY.get_sample_value("huntaze_llm_requests_total", labels) == 2
    assert REGISTRY.get_sample_value("huntaze_llm_cost_usd_total", labels) == 0.5
    assert REGISTRY.get_sample_value("huntaze_llm_tokens_total", {**labels, "kind": "input"}) == 20
    assert REGISTRY.get_sample_value("huntaze_llm_errors_total", labels) is None
    for kind in ("response", "prompt"):
        hits = REGISTRY.get_sample_value("huntaze_llm_cache_hits_total", {**labels, "kind": kind})
        assert hits is None


@pytest.mark.django_db
def test_metrics_add_up_across_worker_processes(client, settings, tmp_path):
    # given two worker processes that each record calls in multiprocess mode
    code = (
        "from decimal import Decimal\n"
        "from usage.metrics import call_observe\n"
        "import sys\n"
        "for _ in range(int(sys.argv[1])):\n"
        "    call_observe(tier='mini', category='chatbot', model='m', status='ok',\n"
        "                 input_tokens=10, cached_tokens=4, output_tokens=5, latency_ms=120,\n"
        "                 cost_usd=Decimal('0.25'), baseline_cost_usd=Decimal('1'),\n"
        "                 cache_hit=False)\n"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for count in ("3", "4"):
        subprocess.run(  # noqa: S603
            [sys.executable, "-c", code, count],
            env=env,
            cwd=django_settings.BASE_DIR,
            check=True,
        )
    settings.PROMETHEUS_MULTIPROC_DIR = str(tmp_path)
    # when
    body = client.get("/metrics").content.decode()
    # then
    labels = 'category="chatbot",model="m",status="ok",tier="mini"'
    assert f"huntaze_llm_requests_total{{{labels}}} 7.0" in body
    assert f"huntaze_llm_cost_usd_total{{{labels}}} 1.75" in body
    hit_labels = 'category="chatbot",kind="prompt",model="m",status="ok",tier="mini"'
    assert f"huntaze_llm_cache_hits_total{{{hit_labels}}} 7.0" in body
