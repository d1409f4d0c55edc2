"""The stream relay: what the client is sent for each read of the upstream, and what is
recorded however the stream ends."""

import asyncio
import json
from types import SimpleNamespace
from unittest import mock

from routing.gateway import streaming
from routing.providers.chat import ProviderError, UpstreamBatch, UpstreamChunk
from usage.models import Status, TokenSource

MODEL = SimpleNamespace(name="gpt-4o-mini")
CALL = SimpleNamespace(plan=SimpleNamespace(prompt_tokens=7))


def chunk(**data) -> UpstreamChunk:
    return UpstreamChunk(json.dumps(data, separators=(",", ":")).encode(), data)


def delta(text: str, finish_reason=None) -> UpstreamChunk:
    return chunk(choices=[{"index": 0, "delta": {"content": text}, "finish_reason": finish_reason}])


USAGE = chunk(choices=[], usage={"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15})


def relay(*batches, failure: Exception | None = None, include_usage: bool = True):
    """The writes the client gets and the outcome recorded, for an upstream sending these."""

    async def upstream_batches():
        for batch in batches:
            yield batch
        if failure is not None:
            raise failure

    upstream = SimpleNamespace(batches=upstream_batches(), sandbox=False)
    recorded = []

    async def finish(call, outcome, upstream):
        recorded.append(outcome)

    async def run():
        events = streaming.stream_relay(CALL, upstream, MODEL, 1, include_usage=include_usage)
        return [write async for write in events]

    with mock.patch.object(streaming, "stream_finish", finish):
        writes = asyncio.run(run())
    assert len(recorded) == 1, "one ledger row, however the stream ends"
    return writes, recorded[0]


def test_the_events_of_one_read_go_out_in_one_write_and_the_last_with_done():
    # given an upstream that sends two reads, the second ending with its [DONE]
    first = UpstreamBatch([delta("Hel"), delta("lo")], done=False)
    last = UpstreamBatch([delta("!", finish_reason="stop"), USAGE], done=True)

    # when it is relayed
    writes, outcome = relay(first, last)

    # then the client gets one write per read, [DONE] with the last, the events as sent
    assert writes == [
        b"data: " + first.chunks[0].raw + b"\n\ndata: " + first.chunks[1].raw + b"\n\n",
        b"data: " + last.chunks[0].raw + b"\n\ndata: " + USAGE.raw + b"\n\ndata: [DONE]\n\n",
    ]
    # and only the last says it is the last (the handler ends the response with it)
    assert [isinstance(w, streaming.LastEvents) for w in writes] == [False, True]
    # and the row has the whole text and the upstream's usage
    assert (outcome.content, outcome.finish_reason, outcome.status) == ("Hello!", "stop", "ok")
    assert (outcome.input_tokens, outcome.output_tokens) == (12, 3)
    assert outcome.token_source == TokenSource.PROVIDER


def test_a_done_read_alone_is_our_done_alone():
    # given an upstream whose [DONE] comes in a read of its own
    writes, outcome = relay(
        UpstreamBatch([delta("Hi", finish_reason="stop"), USAGE], done=False),
        UpstreamBatch([], done=True),
    )
    # then it is the last write, alone
    assert writes[-1] == b"data: [DONE]\n\n"
    assert len(writes) == 2 and outcome.status == Status.OK


def test_the_usage_chunk_asked_for_on_our_account_is_not_relayed():
    # given a caller that did not ask for usage
    writes, outcome = relay(
        UpstreamBatch([delta("Hi", finish_reason="stop"), USAGE], done=True), include_usage=False
    )
    # then the usage chunk is left out, but the row still has the usage
    assert writes == [b"data: " + delta("Hi", finish_reason="stop").raw + b"\n\ndata: [DONE]\n\n"]
    assert outcome.output_tokens == 3


def test_an_upstream_broken_midway_ends_with_an_error_event_and_an_estimate():
    # given an upstream that breaks after one read
    writes, outcome = relay(
        UpstreamBatch([delta("Hel")], done=False), failure=ProviderError("gone")
    )
    # then the read was relayed, then an error event, no [DONE]
    assert writes[0] == b"data: " + delta("Hel").raw + b"\n\n"
    assert json.loads(writes[1].removeprefix(b"data: "))["error"]["message"] == "gone"
    assert len(writes) == 2 and isinstance(writes[1], streaming.LastEvents)
    # and the row bills the prompt and the text so far, as estimates
    assert (outcome.status, outcome.error_code) == (Status.UPSTREAM_ERROR, "upstream_stream_broken")
    assert (outcome.content, outcome.input_tokens) == ("Hel", 7)
    assert outcome.token_source == TokenSource.ESTIMATE
