"""Retry timing and fallback order: pure functions (the loop itself is routing.gateway.upstream)."""

import random

from routing.policy import CategoryRule, ModelSpec, Policy, Tier


def backoff_s(
    *,
    attempt: int,
    retry_after_s: float | None,
    base_s: float,
    cap_s: float,
    rng: random.Random | None = None,
) -> float:
    """Return the wait before retry number `attempt` (1 = first retry): exponential with full
    jitter, but never shorter than the upstream's Retry-After."""
    ceiling = min(cap_s, base_s * 2 ** (attempt - 1))
    wait = (rng or random).uniform(ceiling / 2, ceiling)
    return max(wait, retry_after_s or 0.0)


def fallback_chain(*, rule: CategoryRule, chosen: ModelSpec, policy: Policy) -> list[ModelSpec]:
    """Return the models to try in order: the chosen one, then the category's fallbacks
    (by default a cheap-tier choice falls back to the category's premium model)."""
    names = rule.fallback_names or ((rule.full.name,) if chosen.tier is Tier.MINI else ())
    chain = [chosen]
    for name in names:
        model = policy.models.get(name)
        if model is not None and model.active and model not in chain:
            chain.append(model)
    return chain
