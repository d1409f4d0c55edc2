"""Streams: relay the upstream's events, replay a cached answer, and record however the
stream ends."""

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace

from routing.gateway.call import Call
from routing.gateway.ledger import ledger_record
from routing.gateway.outcome import LedgerRow, Outcome
from routing.gateway.response_cache import response_cache_keep
from routing.policy import ModelSpec
from routing.providers.chat import ProviderError, UpstreamBatch
from routing.providers.usage_block import usage_parse
from routing.qualification import qa_offer_after
from routing.tokens import count_text_tokens
from usage.models import Status, TokenSource

STREAM_DONE = b"data: [DONE]\n\n"


class LastEvents(bytes):
    """The last write of a stream: a handler that knows it (huntaze.asgi's) ends the response
    with it, instead of asking the events for more and then sending an empty end of its own."""


def sse(payload: dict) -> bytes:
    """Return one server-sent event carrying the payload as JSON."""
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


class _StreamTally:
    """What a relayed stream has said so far: its text, usage, tier and finish reason."""

    def __init__(self, include_usage: bool) -> None:
        self.include_usage = include_usage
        self.parts: list[str] = []
        self.usage = None
        self.service_tier = None  # every chunk names the tier that served it
        self.finish_reason = ""

    def relay(self, batch: UpstreamBatch) -> bytes:
        """Take in one read's events; return them as the client gets them, in one piece."""
        events = []
        for chunk in batch.chunks:
            data = chunk.data
            self.service_tier = data.get("service_tier") or self.service_tier
            if data.get("usage"):
                self.usage = data["usage"]
            choices = data.get("choices")
            if choices:
                choice = choices[0]
                content = (choice.get("delta") or {}).get("content")
                if content:
                    self.parts.append(content)
                self.finish_reason = choice.get("finish_reason") or self.finish_reason
            elif not self.include_usage:
                continue  # the usage chunk we asked for on our own account
            if not self.include_usage and data.get("usage"):
                events.append(sse({**data, "usage": None}))
            else:
                events.append(b"data: " + chunk.raw + b"\n\n")
        return b"".join(events)


async def stream_relay(
    call: Call, upstream, model: ModelSpec, attempts: int, *, include_usage: bool
) -> AsyncIterator[bytes]:
    """Forward upstream events as they arrive, those of one read together; write the ledger
    row however the stream ends.

    Ends: normally (usage from the final chunk), client gone (status client_cancelled), or
    upstream broken after the first byte (an OpenAI-shaped error event, then the stream
    closes without [DONE]). The last two bill estimated tokens so far, marked as estimates.
    """
    tally = _StreamTally(include_usage)
    last = b""  # the events read with the upstream's [DONE]: sent with ours
    finished = False
    try:
        async for batch in upstream.batches:
            events = tally.relay(batch)
            if batch.done:
                last = events
                break
            if events:
                yield events
        # Priced before [DONE]; written after the response ends where the handler allows it.
        outcome = stream_outcome(
            call,
            upstream.sandbox,
            tally.parts,
            tally.usage,
            tally.finish_reason,
            service_tier=tally.service_tier,
        )
        outcome = replace(outcome, model=model, attempts=attempts)
        finished = True
        await asyncio.shield(stream_finish(call, outcome, upstream))
        yield LastEvents(last + STREAM_DONE)
    except ProviderError as error:
        outcome = stream_outcome(
            call, upstream.sandbox, tally.parts, None, "", error_code="upstream_stream_broken"
        )
        outcome = replace(outcome, model=model, attempts=attempts)
        finished = True
        await asyncio.shield(stream_finish(call, outcome, upstream))
        body = {"message": error.message, "type": "server_error", "code": error.code}
        yield LastEvents(sse({"error": {**body, "param": None}}))
    finally:
        if not finished:  # the client went away (cancelled, or closed the generator)
            outcome = stream_outcome(
                call, upstream.sandbox, tally.parts, None, "", status=Status.CLIENT_CANCELLED
            )
            outcome = replace(outcome, model=model, attempts=attempts)
            await asyncio.shield(stream_finish(call, outcome, upstream))


async def stream_finish(call: Call, outcome: Outcome, upstream) -> None:
    """Record the stream's row; close the upstream if it ended early, else cache the answer."""
    row = await ledger_record(call, outcome, then=qa_offer_after(call, outcome))
    if outcome.status != Status.OK:
        await upstream.close()
    elif call.cache_key and outcome.model in (None, call.decision.model):
        await response_cache_keep(call, outcome, row)


def stream_outcome(
    call: Call,
    sandbox: bool,
    parts: list[str],
    usage,
    finish_reason: str,
    *,
    status: str = Status.OK,
    error_code: str = "",
    service_tier: str | None = None,
) -> Outcome:
    """Return the outcome of a stream: usage as reported, or estimates when cut short."""
    content = "".join(parts)
    if usage is not None:
        return Outcome(
            content=content,
            **usage_parse(usage, service_tier=service_tier),
            finish_reason=finish_reason,
            sandbox=sandbox,
            streamed=True,
            status=status,
            error_code=error_code,
        )
    # No usage chunk (cut short): the prompt count and the text so far, marked as estimates.
    return Outcome(
        content=content,
        input_tokens=call.plan.prompt_tokens,
        output_tokens=count_text_tokens(content)[0] if content else 0,
        token_source=TokenSource.ESTIMATE,
        finish_reason=finish_reason,
        sandbox=sandbox,
        streamed=True,
        status=Status.UPSTREAM_ERROR if error_code else status,
        error_code=error_code,
    )


async def stream_replay(
    call: Call, outcome: Outcome, row: LedgerRow, *, include_usage: bool
) -> AsyncIterator[bytes]:
    """Serve a cached answer (already recorded) as a stream, in one write: one content chunk,
    finish, usage, [DONE]."""
    base = {
        "id": "chatcmpl-" + call.request_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": call.decision.model.name,
    }
    delta = {"role": "assistant", "content": outcome.content}
    events = [sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})]
    finish = {"index": 0, "delta": {}, "finish_reason": outcome.finish_reason}
    events.append(sse({**base, "choices": [finish]}))
    if include_usage:
        usage = {
            "prompt_tokens": row.input_tokens,
            "completion_tokens": row.output_tokens,
            "total_tokens": row.input_tokens + row.output_tokens,
            "prompt_tokens_details": {"cached_tokens": 0},
        }
        events.append(sse({**base, "choices": [], "usage": usage}))
    events.append(STREAM_DONE)
    yield LastEvents(b"".join(events))
