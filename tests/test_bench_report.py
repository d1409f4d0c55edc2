"""What the benchmark prints where CI shows it (.ci/run's smoke run of `make bench`)."""

import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _gateway_bench(monkeypatch):
    """The benchmark as the script imports it (its folder on sys.path)."""
    monkeypatch.syspath_prepend(str(BENCH))
    monkeypatch.delitem(sys.modules, "gateway_bench", raising=False)
    import gateway_bench

    return gateway_bench


def test_the_server_error_count_reads_as_errors_not_as_answers(monkeypatch):
    gateway_bench = _gateway_bench(monkeypatch)

    # then a clean run says there was no HTTP 500, never "0 answers of 500"
    assert gateway_bench.server_errors_line(0) == "no HTTP 500 (Internal Server Error) responses"
    assert gateway_bench.server_errors_line(1) == "1 HTTP 500 (Internal Server Error) response"
    assert gateway_bench.server_errors_line(3) == "3 HTTP 500 (Internal Server Error) responses"


def test_an_ab_is_judged_on_reps_paired_so_a_drifting_host_slows_both_alike(monkeypatch, tmp_path):
    gateway_bench = _gateway_bench(monkeypatch)

    # given three reps on a host twice as slow in the second, the router 10% cheaper in each:
    # servers' cores = upstream's 0.1 ms plus the gateway's CPU, per request, x req/s
    def run(target, rep, gateway_ms, rps):
        upstream_ms = 0.1 * (2 if rep == 1 else 1)
        cores = (upstream_ms + gateway_ms) * rps / 1e3
        return {"target": target, "conc": 1, "rep": rep, "rps": rps,
                "cpu_cores": {"servers": cores}}  # fmt: skip

    lines = []
    for rep, slow in enumerate([1, 2, 1]):
        lines.append(run("direct", rep, 0.0, 5000 / slow))
        lines.append(run("base_w1", rep, 3.0 * slow, 300 / slow))
        lines.append(run("router_w1", rep, 2.7 * slow, 330 / slow))
    results = tmp_path / "delay0-stream.jsonl"
    results.write_text("\n".join(json.dumps(line) for line in lines))

    # when the reps are paired
    (row,) = gateway_bench.paired_ab_rows([results])

    # then each pair reads 0.9 however slow its rep was, and so does the interval
    assert (row["scenario"], row["conc"], row["target"], row["reps"]) == (
        "delay0-stream", 1, "router_w1", 3
    )  # fmt: skip
    assert round(row["ratio"], 6) == 0.9
    assert round(row["low"], 6) == round(row["high"], 6) == 0.9
    assert round(row["base_ms"], 6) == 3.0 and round(row["this_ms"], 6) == 2.7
