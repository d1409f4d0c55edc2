"""Writes and orchestration: routed completions, policy versions, API keys."""

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from routing.engine import Decision, RouteRequest, route
from routing.models import ApiKey, ModelProfile, PolicyVersion, TaskCategory
from routing.pricing import baseline_cost_usd, call_cost_usd
from routing.prompts import build_messages, routable_text
from routing.provider import ProviderError, ProviderResult, chat_complete
from routing.selectors import policy_get
from routing.tokens import count_message_tokens
from usage.models import Status, TokenSource
from usage.services import usage_record

API_KEY_PREFIX = "hz_"


@dataclass(frozen=True)
class RoutePlan:
    decision: Decision
    messages: list[dict]
    prompt_tokens: int
    token_source: str
    text: str


@dataclass(frozen=True)
class CompletionResult:
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
) -> RoutePlan:
    """Return the decision and the prompt to send, without calling any model."""
    policy = policy_get()
    text = routable_text(messages)
    caller_tokens, token_source = count_message_tokens(messages)
    request = RouteRequest(
        text=text,
        prompt_tokens=caller_tokens,
        category=category,
        complexity=complexity,
        critical=critical,
        max_tokens=max_tokens,
    )
    decision = route(request=request, policy=policy)
    prompt = build_messages(system_prompt=decision.system_prompt, messages=messages)
    return RoutePlan(decision, prompt, decision.prompt_tokens, token_source, text)


def completion_route(
    *,
    api_key: ApiKey,
    messages: list[dict],
    category: str | None = None,
    complexity: float | None = None,
    critical: bool | None = None,
    user: str = "",
    max_tokens: int | None = None,
    temperature: float | None = None,
    metadata: dict | None = None,
) -> CompletionResult:
    """Route one completion, call the chosen model and record it; raise CompletionFailed."""
    plan = route_plan(
        messages=messages,
        category=category,
        complexity=complexity,
        critical=critical,
        max_tokens=max_tokens,
    )
    decision = plan.decision
    request_id = "req_" + uuid.uuid4().hex
    started_at = timezone.now()
    started = time.perf_counter()
    try:
        result = chat_complete(
            model=decision.model,
            messages=plan.messages,
            max_tokens=decision.max_output_tokens,
            temperature=temperature,
            user=user,
        )
    except ProviderError as error:
        _ledger_write(
            request_id=request_id,
            started_at=started_at,
            started=started,
            api_key=api_key,
            user=user,
            plan=plan,
            metadata=metadata,
            result=None,
            error=error,
        )
        raise CompletionFailed(request_id=request_id, error=error) from error
    record = _ledger_write(
        request_id=request_id,
        started_at=started_at,
        started=started,
        api_key=api_key,
        user=user,
        plan=plan,
        metadata=metadata,
        result=result,
        error=None,
    )
    return CompletionResult(
        id=request_id,
        content=result.content,
        decision=decision,
        input_tokens=record.input_tokens,
        output_tokens=record.output_tokens,
        cached_tokens=record.cached_tokens,
        latency_ms=record.latency_ms,
        cost_usd=record.cost_usd,
        baseline_cost_usd=record.baseline_cost_usd,
        sandbox=record.sandbox,
    )


def _ledger_write(
    *,
    request_id: str,
    started_at,
    started: float,
    api_key: ApiKey,
    user: str,
    plan: RoutePlan,
    metadata: dict | None,
    result: ProviderResult | None,
    error: ProviderError | None,
):
    decision = plan.decision
    model = decision.model
    latency_ms = round((time.perf_counter() - started) * 1000)
    if result is not None:
        input_tokens, cached, output = (
            result.input_tokens,
            result.cached_tokens,
            result.output_tokens,
        )
        token_source = TokenSource.PROVIDER
        cost = call_cost_usd(
            input_per_mtok_usd=model.input_per_mtok_usd,
            cached_input_per_mtok_usd=model.cached_input_per_mtok_usd,
            output_per_mtok_usd=model.output_per_mtok_usd,
            input_tokens=input_tokens,
            cached_tokens=cached,
            output_tokens=output,
        )
        uncached = call_cost_usd(
            input_per_mtok_usd=model.input_per_mtok_usd,
            cached_input_per_mtok_usd=model.input_per_mtok_usd,
            output_per_mtok_usd=model.output_per_mtok_usd,
            input_tokens=input_tokens,
            cached_tokens=0,
            output_tokens=output,
        )
        baseline = baseline_cost_usd(
            input_per_mtok_usd=decision.baseline_model.input_per_mtok_usd,
            output_per_mtok_usd=decision.baseline_model.output_per_mtok_usd,
            input_tokens=input_tokens,
            output_tokens=output,
        )
        status, error_code, sandbox = Status.OK, "", result.sandbox
    else:
        # Nothing was billed: the row keeps the prompt estimate and costs nothing.
        input_tokens, cached, output = plan.prompt_tokens, 0, 0
        token_source = plan.token_source
        cost = uncached = baseline = Decimal("0")
        status = {
            "upstream_timeout": Status.UPSTREAM_TIMEOUT,
            "upstream_rate_limited": Status.UPSTREAM_RATE_LIMITED,
            "upstream_bad_response": Status.UPSTREAM_BAD_RESPONSE,
        }.get(error.code, Status.UPSTREAM_ERROR)
        error_code, sandbox = error.code, settings.UPSTREAM_MODE == "sandbox"
    store_text = settings.USAGE_STORE_TEXT
    limit = settings.USAGE_STORE_TEXT_MAX_CHARS
    return usage_record(
        request_id=request_id,
        created_at=started_at,
        api_key=api_key,
        end_user=user,
        category=decision.category,
        category_source=decision.category_source,
        complexity=decision.complexity,
        complexity_source=decision.complexity_source,
        critical=decision.critical,
        tier=decision.tier.value,
        model=model.name,
        reason_code=decision.reason_code,
        policy_version_id=decision.policy_version,
        input_tokens=input_tokens,
        cached_tokens=cached,
        output_tokens=output,
        token_source=token_source,
        latency_ms=latency_ms,
        cost_usd=cost,
        uncached_cost_usd=uncached,
        estimated_cost_usd=decision.estimated_cost_usd,
        estimate_source=plan.token_source,
        baseline_cost_usd=baseline,
        baseline_model=decision.baseline_model.name,
        price_input_per_mtok_usd=model.input_per_mtok_usd,
        price_cached_input_per_mtok_usd=model.cached_input_per_mtok_usd,
        price_output_per_mtok_usd=model.output_per_mtok_usd,
        status=status,
        error_code=error_code,
        sandbox=sandbox,
        metadata=metadata or {},
        prompt_text=plan.text[:limit] if store_text else "",
        response_text=(result.content[:limit] if store_text and result else ""),
    )


# --- policy versions -------------------------------------------------------------------


def _model_snapshot(profile: ModelProfile) -> dict:
    return {
        "name": profile.name,
        "tier": profile.tier,
        "base_url": profile.base_url,
        "api_key_env": profile.api_key_env,
        "input_per_mtok_usd": str(profile.input_per_mtok_usd),
        "cached_input_per_mtok_usd": str(profile.cached_input_per_mtok_usd),
        "output_per_mtok_usd": str(profile.output_per_mtok_usd),
        "prices_effective_from": profile.prices_effective_from.isoformat(),
        "batch_discount_percent": str(profile.batch_discount_percent),
        "active": profile.active,
    }


def _category_snapshot(category: TaskCategory) -> dict:
    return {
        "full_from_complexity": category.full_from_complexity,
        "always_full": category.always_full,
        "mini_model": category.mini_model.name,
        "full_model": category.full_model.name,
        "system_prompt": category.system_prompt,
        "max_output_tokens": category.max_output_tokens,
        "expected_output_tokens": category.expected_output_tokens,
        "keywords": category.classifier_keywords,
        "triggers": category.critical_triggers,
        "enabled": category.enabled,
    }


def policy_snapshot_build() -> dict:
    """Return the current policy rows as a JSON-ready snapshot."""
    categories = TaskCategory.objects.select_related("mini_model", "full_model")
    default = next((c.slug for c in categories if c.is_default), "")
    return {
        "default_category": default,
        "models": {p.name: _model_snapshot(p) for p in ModelProfile.objects.all()},
        "categories": {c.slug: _category_snapshot(c) for c in categories},
    }


def _snapshot_changes(before: dict, after: dict) -> list[str]:
    changes = []
    if before.get("default_category") != after["default_category"]:
        changes.append(
            f"default_category: {before.get('default_category')} -> {after['default_category']}"
        )
    for section in ("models", "categories"):
        old, new = before.get(section, {}), after[section]
        for name in sorted(old.keys() - new.keys()):
            changes.append(f"{section}.{name}: removed")
        for name in sorted(new.keys() - old.keys()):
            changes.append(f"{section}.{name}: added")
        for name in sorted(old.keys() & new.keys()):
            for key in sorted(new[name]):
                if old[name].get(key) != new[name][key]:
                    changes.append(
                        f"{section}.{name}.{key}: {old[name].get(key)!r} -> {new[name][key]!r}"
                    )
    return changes


@transaction.atomic
def policy_version_create(*, actor: str, comment: str = "") -> PolicyVersion:
    """Record the current policy as a new version (or return the latest if nothing changed)."""
    latest = PolicyVersion.objects.select_for_update().order_by("-id").first()
    snapshot = policy_snapshot_build()
    changes = _snapshot_changes(latest.snapshot if latest else {}, snapshot)
    if latest is not None and not changes:
        return latest
    return PolicyVersion.objects.create(
        actor=actor, comment=comment, changes=changes, snapshot=snapshot
    )


# --- API keys ---------------------------------------------------------------------------


def api_key_create(*, name: str) -> tuple[ApiKey, str]:
    """Create a key and return it with its plaintext, which is never stored."""
    plaintext = API_KEY_PREFIX + secrets.token_urlsafe(32)
    api_key = ApiKey.objects.create(
        name=name,
        prefix=plaintext[:10],
        key_hash=hashlib.sha256(plaintext.encode()).hexdigest(),
    )
    return api_key, plaintext


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """Revoke a key from now on; its ledger rows stay."""
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    return api_key


# --- defaults ---------------------------------------------------------------------------


@transaction.atomic
def policy_seed(*, actor: str = "seed") -> PolicyVersion:
    """Create the default models and categories that are missing; never overwrite edits."""
    from routing.defaults import DEFAULT_CLASSIFIER_KEYWORDS, DEFAULT_CRITICAL_TRIGGERS
    from routing.seed_data import DEFAULT_CATEGORIES, DEFAULT_MODELS

    for model in DEFAULT_MODELS:
        ModelProfile.objects.get_or_create(name=model["name"], defaults=model)
    mini = ModelProfile.objects.get(name="gpt-4o-mini")
    full = ModelProfile.objects.get(name="gpt-4o")
    has_default = TaskCategory.objects.filter(is_default=True).exists()
    for category in DEFAULT_CATEGORIES:
        slug = category["slug"]
        defaults = {
            **category,
            "is_default": category.get("is_default", False) and not has_default,
            "mini_model": mini,
            "full_model": full,
            "classifier_keywords": DEFAULT_CLASSIFIER_KEYWORDS.get(slug, {}),
            "critical_triggers": DEFAULT_CRITICAL_TRIGGERS.get(slug, []),
        }
        TaskCategory.objects.get_or_create(slug=slug, defaults=defaults)
    return policy_version_create(actor=actor, comment="default policy")
