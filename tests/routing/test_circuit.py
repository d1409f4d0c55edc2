"""The circuit breaker alone, on the clock it is given: time moves by passing a later `now`,
with no real wait and no patched clock."""

import asyncio

import pytest

from routing.circuit import (
    CLOSED,
    OPEN,
    PROBE,
    _circuit_count,
    circuit_allows,
    circuit_record,
    circuit_states,
)

MODEL = "gpt-4o"
T0 = 1_800_000_000.0  # any wall-clock second


@pytest.fixture(autouse=True)
def breaker(settings):
    settings.CIRCUIT_FAILURE_THRESHOLD = 3
    settings.CIRCUIT_WINDOW_S = 60
    settings.CIRCUIT_COOLDOWN_S = 30


def _allows(now: float) -> str:
    return asyncio.run(circuit_allows(MODEL, now=now))


def _record(*, ok: bool, now: float, state: str = CLOSED) -> None:
    asyncio.run(circuit_record(MODEL, ok=ok, now=now, state=state))


def _fail(times: int, *, now: float) -> None:
    for _ in range(times):
        _record(ok=False, now=now)


def test_the_circuit_stays_closed_below_the_threshold():
    _fail(2, now=T0)
    assert _allows(T0 + 1) == CLOSED
    assert circuit_states([MODEL], now=T0 + 1) == {MODEL: "closed"}


def test_the_threshold_opens_the_circuit_until_the_cooldown_ends():
    # given three failures at T0
    _fail(3, now=T0)
    # then it is open for the whole cooldown, to its last instant
    assert _allows(T0) == OPEN
    assert _allows(T0 + 29.999) == OPEN
    assert circuit_states([MODEL], now=T0 + 29.999) == {MODEL: "open"}
    # and half-open after it: one probe, every other request still skips the model
    assert circuit_states([MODEL], now=T0 + 30) == {MODEL: "half-open"}
    assert _allows(T0 + 30) == PROBE
    assert _allows(T0 + 30.5) == OPEN


def test_a_successful_probe_closes_the_circuit():
    _fail(3, now=T0)
    assert _allows(T0 + 31) == PROBE
    # when the probe succeeds
    _record(ok=True, now=T0 + 31, state=PROBE)
    # then
    assert _allows(T0 + 32) == CLOSED
    assert circuit_states([MODEL], now=T0 + 32) == {MODEL: "closed"}


def test_a_failed_probe_opens_the_circuit_for_another_cooldown():
    _fail(3, now=T0)
    assert _allows(T0 + 31) == PROBE
    # when the probe fails (the failure count is still at the threshold)
    _record(ok=False, now=T0 + 31)
    # then a new cooldown runs from the probe's failure
    assert _allows(T0 + 60) == OPEN
    assert circuit_states([MODEL], now=T0 + 61) == {MODEL: "half-open"}


def test_a_failure_this_worker_sees_ends_its_trust_in_a_closed_look_at_once():
    # given this worker saw the circuit closed at T0
    assert _allows(T0) == CLOSED
    # when its own calls fail up to the threshold
    _fail(3, now=T0)
    # then it sees the open circuit within the second it would otherwise trust its look
    assert _allows(T0 + 0.5) == OPEN


def test_a_worker_trusts_a_closed_look_for_a_second_and_not_past_a_clock_step_back():
    # given this worker saw the circuit closed, then other workers opened it
    assert _allows(T0) == CLOSED
    for _ in range(3):  # their failures: this worker's own view is not told
        _circuit_count(MODEL, ok=False, now=T0)
    # then within the second the worker goes on its look; after it, or with the clock
    # stepped back, it looks again
    assert _allows(T0 + 0.5) == CLOSED
    assert _allows(T0 - 10) == OPEN
    assert _allows(T0 + 1) == OPEN
