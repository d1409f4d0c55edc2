"""The retry and fallback loop around the upstream call, within the category's deadline."""

import asyncio
import time

from django.conf import settings

from routing.circuit import OPEN as CIRCUIT_OPEN
from routing.circuit import circuit_allows, circuit_record
from routing.gateway.call import Call
from routing.policy import ModelSpec
from routing.providers.chat import ProviderError, ProviderTimeout, ProviderUnreachable
from routing.retry import backoff_s, fallback_chain


class UpstreamFailed(Exception):
    """Every model of the chain failed, or a failure that no retry can fix."""

    def __init__(self, error: ProviderError, *, attempts: int, model: ModelSpec) -> None:
        super().__init__(error.message)
        self.error, self.attempts, self.model = error, attempts, model


async def upstream_attempt(call: Call, send) -> tuple[object, ModelSpec, int]:
    """Call `send(model=..., timeout_s=...)` on the chosen model, then its fallbacks, with
    retries and backoff, all within the category's deadline; return (answer, model, attempts).

    Retries 429, 5xx, timeouts and resets (honouring Retry-After); other 4xx stop at once.
    A model whose circuit is open is skipped. A model's attempts end early enough to leave
    the models after it their reserve of the deadline (ROUTER_FALLBACK_RESERVE_S), so a hung
    model still falls back in time. Only failures that are the model's fault count against
    its circuit: a request it refused is the caller's 400.
    """
    rule = call.decision.rule
    deadline = call.started + rule.deadline_s
    chain = fallback_chain(rule=rule, chosen=call.decision.model, policy=call.plan.policy)
    attempts = 0
    last: tuple[ProviderError, ModelSpec] | None = None  # the last model actually called
    for index, model in enumerate(chain):
        state = await circuit_allows(model.name, now=time.time())
        if state == CIRCUIT_OPEN:
            continue
        model_deadline = _model_deadline(deadline, later_models=len(chain) - index - 1)
        for attempt in range(1, settings.ROUTER_ATTEMPTS_PER_MODEL + 1):
            remaining = model_deadline - time.perf_counter()
            if remaining <= 0:
                break  # this model's share is spent: the next model, if any
            attempts += 1
            try:
                answer = await send(
                    model=model, timeout_s=min(settings.UPSTREAM_TIMEOUT_S, remaining)
                )
            except ProviderError as error:
                if error.model_at_fault:
                    await circuit_record(model.name, ok=False, now=time.time())
                last = (error, model)
                if not error.retryable:
                    raise UpstreamFailed(error, attempts=attempts, model=model) from error
                wait = backoff_s(
                    attempt=attempt,
                    retry_after_s=error.retry_after_s,
                    base_s=settings.ROUTER_BACKOFF_BASE_S,
                    cap_s=settings.ROUTER_BACKOFF_MAX_S,
                )
                if attempt == settings.ROUTER_ATTEMPTS_PER_MODEL:
                    break
                if wait >= model_deadline - time.perf_counter():
                    break  # no time to wait here: the next model, if any
                await asyncio.sleep(wait)
                continue
            await circuit_record(model.name, ok=True, state=state, now=time.time())
            return answer, model, attempts
    error, model = last or (
        ProviderUnreachable("every model of the chain is out of rotation"),
        call.decision.model,
    )
    if time.perf_counter() >= deadline:
        error = ProviderTimeout(f"deadline of {rule.deadline_s:g} s reached")
    raise UpstreamFailed(error, attempts=attempts, model=model)


def _model_deadline(deadline: float, *, later_models: int) -> float:
    """When a model's attempts must stop: the request's deadline, less the reserve kept for
    the models after it (half of what remains, at most ROUTER_FALLBACK_RESERVE_S)."""
    if not later_models:
        return deadline
    remaining = deadline - time.perf_counter()
    return deadline - min(remaining / 2, settings.ROUTER_FALLBACK_RESERVE_S)
