"""The hot-path ASGI handler leaves nothing for the garbage collector."""

import gc

import httpx2
import pytest
from django.http import HttpRequest, HttpResponseBase

from tests.waits import after_response_settled

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = {"model": "auto", "messages": [{"role": "user", "content": "hello there"}]}


@pytest.fixture
def saved_garbage():
    """Collection off while the test runs; then every unreachable cycle is kept in gc.garbage
    for the test to read, instead of freed."""
    gc.collect()
    gc.disable()
    try:
        yield _collect_saving_all
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def _collect_saving_all() -> list:
    gc.set_debug(gc.DEBUG_SAVEALL)
    gc.collect()
    return list(gc.garbage)


def test_served_requests_are_freed_without_the_collector(
    asgi_server, policy, api_key, saved_garbage
):
    # given requests served to the end, answered and streamed
    headers = {"Authorization": f"Bearer {api_key[1]}"}
    with httpx2.Client(timeout=10) as http:
        for body in (HELLO, {**HELLO, "stream": True}, HELLO):
            response = http.post(f"{asgi_server}/v1/chat/completions", json=body, headers=headers)
            assert response.status_code == 200
    after_response_settled()
    # then no request or response of ours was left in a reference cycle: each was freed as
    # soon as it was done with, not by a collection (which walks every young object, and
    # made a request now and then a millisecond slower)
    garbage = saved_garbage()
    leftovers = [o for o in garbage if isinstance(o, HttpRequest | HttpResponseBase)]
    assert leftovers == []
