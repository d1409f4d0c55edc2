"""Waits: for work a real server does after its response (routing.after_response), and for
room in the current minute (rate-limit windows)."""

import time

from routing import after_response


def after_response_settled(timeout_s: float = 10) -> None:
    """Return once the in-process server has run every deferred job (its ledger rows are
    written); a client has its answer a moment before that. Fails past the timeout."""
    deadline = time.monotonic() + timeout_s
    while after_response.pending() and time.monotonic() < deadline:
        time.sleep(0.005)
    assert not after_response.pending(), "deferred ledger writes did not finish"


def minute_with_room(seconds: float) -> None:
    """Return with at least `seconds` left in the current wall-clock minute, sleeping into the
    next one if needed: a rate-limit count that straddled two minutes would start again."""
    left = 60 - time.time() % 60
    if left < seconds:
        time.sleep(left + 0.05)
