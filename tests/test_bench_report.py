"""What the benchmark prints where CI shows it (.ci/run's smoke run of `make bench`)."""

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_the_server_error_count_reads_as_errors_not_as_answers(monkeypatch):
    # given the benchmark as a script imports it (its folder on sys.path)
    monkeypatch.syspath_prepend(str(BENCH))
    monkeypatch.delitem(sys.modules, "gateway_bench", raising=False)
    import gateway_bench

    # then a clean run says there was no HTTP 500, never "0 answers of 500"
    assert gateway_bench.server_errors_line(0) == "no HTTP 500 (Internal Server Error) responses"
    assert gateway_bench.server_errors_line(1) == "1 HTTP 500 (Internal Server Error) response"
    assert gateway_bench.server_errors_line(3) == "3 HTTP 500 (Internal Server Error) responses"
