"""The in-flight records' forgetting thread: ids submitted together go in one pipeline."""

import threading
import time

from routing import inflight


def test_forgets_submitted_together_go_to_redis_in_one_pipeline(monkeypatch):
    batches: list[tuple[str, ...]] = []
    done = threading.Event()

    def forget(*request_ids: str) -> None:
        batches.append(request_ids)
        if sum(len(batch) for batch in batches) >= 5:
            done.set()

    monkeypatch.setattr(inflight, "inflight_forget", forget)
    monkeypatch.setattr(inflight, "FORGET_GATHER_S", 0.05)
    forgetter = inflight._Forgetter()
    # when five rows are written within the gathering time
    for n in range(5):
        forgetter.submit(f"req_{n}")
    # then one pipeline forgets them all, in order
    assert done.wait(timeout=5)
    assert batches == [("req_0", "req_1", "req_2", "req_3", "req_4")]


def test_a_failed_forget_does_not_stop_the_thread(monkeypatch):
    batches: list[tuple[str, ...]] = []

    def forget(*request_ids: str) -> None:
        batches.append(request_ids)
        if len(batches) == 1:
            raise RuntimeError("redis went away")

    monkeypatch.setattr(inflight, "inflight_forget", forget)
    monkeypatch.setattr(inflight, "FORGET_GATHER_S", 0.01)
    forgetter = inflight._Forgetter()
    forgetter.submit("req_a")
    deadline = time.monotonic() + 5
    while not batches and time.monotonic() < deadline:
        time.sleep(0.01)
    # when the first batch failed, a later one is still forgotten
    forgetter.submit("req_b")
    while len(batches) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert batches == [("req_a",), ("req_b",)]


def test_settled_waits_for_the_forgets_and_cuts_the_gathering_short(monkeypatch):
    batches: list[tuple[str, ...]] = []
    release = threading.Event()

    def forget(*request_ids: str) -> None:
        release.wait(timeout=5)
        batches.append(request_ids)

    monkeypatch.setattr(inflight, "inflight_forget", forget)
    monkeypatch.setattr(inflight, "FORGET_GATHER_S", 30.0)  # longer than the test
    assert inflight._Forgetter().settled(timeout_s=0.1)  # nothing submitted: settled at once
    forgetter = inflight._Forgetter()
    forgetter.submit("req_1")
    forgetter.submit("req_2")
    # while Redis has not answered, they are not settled
    assert not forgetter.settled(timeout_s=0.2)
    # once it answers, waiting ends long before the gathering time would have
    release.set()
    started = time.monotonic()
    assert forgetter.settled(timeout_s=5)
    assert time.monotonic() - started < 5
    assert batches == [("req_1", "req_2")]
