"""The request and its plan: what either API receives, the routing decision and prompt
it leads to, and everything decided before the upstream call."""

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from routing.engine import Decision, RouteRequest, route
from routing.models import ApiKey
from routing.policy import Policy
from routing.prompts import build_messages, routable_text
from routing.providers.chat import ProviderError
from routing.rollout import rollout_subject
from routing.selectors import policy_get
from routing.tokens import count_message_tokens


@dataclass(frozen=True)
class CompletionRequest:
    """One completion as either API receives it, normalised."""

    messages: list[dict]
    category: str | None = None
    complexity: float | None = None
    critical: bool | None = None
    model: str | None = None
    user: str = ""
    max_tokens: int | None = None
    temperature: float | None = None
    sampling: dict = field(default_factory=dict)  # passed through: top_p, stop, seed, ...
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RoutePlan:
    """The routing decision for a request and the prompt to send, before any call."""

    decision: Decision
    messages: list[dict]
    prompt_tokens: int
    token_source: str
    text: str
    policy: Policy
    subject: str
    api_key_id: int

    def feature_on(self, name: str) -> bool:
        return self.policy.feature_on(name, subject=self.subject, api_key_id=self.api_key_id)


@dataclass(frozen=True)
class CompletionResult:
    """A completed call as both APIs answer it."""

    id: str
    content: str
    decision: Decision
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    latency_ms: int
    cost_usd: Decimal
    baseline_cost_usd: Decimal
    sandbox: bool
    cache_hit: bool = False
    finish_reason: str = "stop"


@dataclass(frozen=True)
class StreamStart:
    """A stream whose model is decided and whose upstream answered: the events to relay."""

    id: str
    decision: Decision
    events: AsyncIterator[bytes]
    cache_hit: bool


class CompletionFailed(Exception):
    """An upstream failure after its ledger row was written."""

    def __init__(self, *, request_id: str, error: ProviderError) -> None:
        super().__init__(error.message)
        self.request_id = request_id
        self.error = error


def route_plan(
    *,
    messages: list[dict],
    category: str | None = None,
    complexity: float | None = None,
    critical: bool | None = None,
    max_tokens: int | None = None,
    model: str | None = None,
    user: str = "",
    api_key_id: int = 0,
) -> RoutePlan:
    """Return the decision and the prompt to send, without calling any model."""
    subject = rollout_subject(end_user=user, api_key_id=api_key_id)
    # The subject's experiment arm: its flags as well as its rules and prices apply.
    policy = policy_get().for_subject(subject)
    text = routable_text(messages)
    caller_tokens, token_source = count_message_tokens(messages)
    request = RouteRequest(
        text=text,
        prompt_tokens=caller_tokens,
        category=category,
        complexity=complexity,
        critical=critical,
        max_tokens=max_tokens,
        model=model,
        subject=subject,
        api_key_id=api_key_id,
    )
    decision = route(request=request, policy=policy)
    prompt = build_messages(system_prompt=decision.system_prompt, messages=messages)
    return RoutePlan(
        decision, prompt, decision.prompt_tokens, token_source, text, policy, subject, api_key_id
    )


def request_route_plan(*, request: CompletionRequest, api_key_id: int) -> RoutePlan:
    """Return the plan of one received request (live, or a batch item)."""
    return route_plan(
        messages=request.messages,
        category=request.category,
        complexity=request.complexity,
        critical=request.critical,
        max_tokens=request.max_tokens,
        model=request.model,
        user=request.user,
        api_key_id=api_key_id,
    )


@dataclass(frozen=True)
class Call:
    """Everything decided before the upstream call."""

    request_id: str
    api_key: ApiKey
    request: CompletionRequest
    plan: RoutePlan
    cache_key: str | None
    started_at: datetime
    started: float
    remembered_in: str = "table"  # where its in-flight record is: "table" or "redis"
    cached: dict | None = None  # the response cache's answer, read while preparing

    @property
    def decision(self) -> Decision:
        return self.plan.decision

    def provider_kwargs(self) -> dict:
        return {
            "model": self.decision.model,
            "messages": self.plan.messages,
            "max_tokens": self.decision.max_output_tokens,
            "temperature": self.request.temperature,
            "user": self.request.user,
            "cache_key_category": (
                self.decision.category if self.plan.feature_on("prompt_cache_key") else None
            ),
            "sampling": self.request.sampling,
        }
