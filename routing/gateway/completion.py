"""The two entry points: a completion answered whole, and a streamed one."""

import asyncio
import time
import uuid
from dataclasses import replace

from django.utils import timezone

from routing.after_response import outlive_the_client
from routing.db import db_call
from routing.engine import RoutingError
from routing.gateway.admission import admission_open
from routing.gateway.call import (
    Call,
    CompletionFailed,
    CompletionRequest,
    CompletionResult,
    StreamStart,
    request_route_plan,
)
from routing.gateway.ledger import ledger_record
from routing.gateway.outcome import (
    completion_result,
    outcome_from_cache,
    outcome_from_error,
    outcome_from_result,
    outcome_not_called,
)
from routing.gateway.response_cache import (
    response_cache_keep,
    response_cache_key,
    response_cache_read,
)
from routing.gateway.streaming import stream_finish, stream_outcome, stream_relay, stream_replay
from routing.gateway.upstream import UpstreamFailed, upstream_attempt
from routing.models import ApiKey
from routing.policy import ModelSpec
from routing.providers.chat import ProviderResult, achat_complete, achat_stream_open
from routing.qualification import qa_offer_after
from usage.models import Status


def call_prepare(*, api_key: ApiKey, request: CompletionRequest, stream: bool = False) -> Call:
    """Return the call, planned and admitted (budget reserved, in-flight record kept)."""
    plan = request_route_plan(request=request, api_key_id=api_key.pk)
    if stream and not plan.feature_on("streaming"):  # before admission: nothing to record
        raise RoutingError("streaming_disabled", "Streaming is switched off.", "stream")
    cache_key = response_cache_key(plan=plan, request=request, api_key=api_key)
    call = Call(
        request_id="req_" + uuid.uuid4().hex,
        api_key=api_key,
        request=request,
        plan=plan,
        cache_key=cache_key,
        started_at=timezone.now(),
        started=time.perf_counter(),
        # Read here, on this thread: no second hop off the event loop for it.
        cached=response_cache_read(cache_key) if cache_key else None,
    )
    return replace(call, remembered_in=admission_open(call))


async def _record_failure(call: Call, failure: UpstreamFailed) -> CompletionFailed:
    await ledger_record(call, outcome_from_error(call, failure))
    return CompletionFailed(request_id=call.request_id, error=failure.error)


async def completion_create(*, api_key: ApiKey, request: CompletionRequest) -> CompletionResult:
    """Route one completion, call the chosen model and record it; raise CompletionFailed."""
    return await outlive_the_client(
        lambda client_gone: _completion_run(api_key, request, client_gone)
    )


async def _completion_run(
    api_key: ApiKey, request: CompletionRequest, client_gone: asyncio.Event
) -> CompletionResult:
    call = await db_call(call_prepare, api_key=api_key, request=request)
    hit = call.cached
    if hit is not None:
        outcome = outcome_from_cache(hit)
        return completion_result(call, outcome, await ledger_record(call, outcome))
    if client_gone.is_set():  # gone before any call: nothing billed, the row says so
        outcome = outcome_not_called(call, status=Status.CLIENT_CANCELLED)
        return completion_result(call, outcome, await ledger_record(call, outcome))
    kwargs = call.provider_kwargs()

    async def send(*, model: ModelSpec, timeout_s: float) -> ProviderResult:
        return await achat_complete(**{**kwargs, "model": model, "timeout_s": timeout_s})

    try:
        result, model, attempts = await upstream_attempt(call, send)
    except UpstreamFailed as failure:
        raise await _record_failure(call, failure) from failure.error
    outcome = outcome_from_result(result, model=model, attempts=attempts)
    if client_gone.is_set():  # answered and billed, but no one took the answer
        outcome = replace(outcome, status=Status.CLIENT_CANCELLED)
    row = await ledger_record(call, outcome, then=qa_offer_after(call, outcome))
    if call.cache_key and model == call.decision.model:
        await response_cache_keep(call, outcome, row)  # before the answer: a repeat hits
    return completion_result(call, outcome, row)


async def completion_stream(
    *, api_key: ApiKey, request: CompletionRequest, include_usage: bool = False
) -> StreamStart:
    """Open a streamed completion; raise CompletionFailed if it fails before the first byte.

    Retries and fallback happen while opening, before any byte reaches the client."""
    return await outlive_the_client(
        lambda client_gone: _stream_open(api_key, request, include_usage, client_gone)
    )


async def _stream_open(
    api_key: ApiKey, request: CompletionRequest, include_usage: bool, client_gone: asyncio.Event
) -> StreamStart:
    call = await db_call(call_prepare, api_key=api_key, request=request, stream=True)
    hit = call.cached
    if hit is not None:
        outcome = outcome_from_cache(hit, streamed=True)
        row = await ledger_record(call, outcome)  # now: the events may never be read
        events = stream_replay(call, outcome, row, include_usage=include_usage)
        return StreamStart(call.request_id, call.decision, events, cache_hit=True)
    kwargs = call.provider_kwargs()

    async def send(*, model: ModelSpec, timeout_s: float):
        return await achat_stream_open(**{**kwargs, "model": model, "timeout_s": timeout_s})

    try:
        upstream, model, attempts = await upstream_attempt(call, send)
    except UpstreamFailed as failure:
        raise await _record_failure(call, failure) from failure.error
    if client_gone.is_set():  # opened for no one: the prompt is billed, nothing more is read
        outcome = stream_outcome(
            call, upstream.sandbox, [], None, "", status=Status.CLIENT_CANCELLED
        )
        await stream_finish(call, replace(outcome, model=model, attempts=attempts), upstream)
        raise asyncio.CancelledError
    events = stream_relay(call, upstream, model, attempts, include_usage=include_usage)
    decision = (
        call.decision
        if model == call.decision.model
        else replace(call.decision, model=model, tier=model.tier)
    )
    return StreamStart(call.request_id, decision, events, cache_hit=False)
