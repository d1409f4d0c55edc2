"""Micro-benchmark of the pure decision engine: microseconds per decision.

Prints figures; asserts nothing. Run: `make bench-engine`.
The engine call includes category inference and complexity estimation; token counting
(tiktoken, done once per request before the engine) is reported on its own line.
"""

import os
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(ROOT.parent / "shared" / "tiktoken"))

from routing import tokens  # noqa: E402
from routing.defaults import DEFAULT_CLASSIFIER_KEYWORDS, DEFAULT_CRITICAL_TRIGGERS  # noqa: E402
from routing.engine import CategoryRule, ModelSpec, Policy, RouteRequest, Tier, route  # noqa: E402
from routing.seed_data import DEFAULT_CATEGORIES  # noqa: E402

MINI = ModelSpec("gpt-4o-mini", Tier.MINI, Decimal("0.15"), Decimal("0.075"), Decimal("0.60"))
FULL = ModelSpec("gpt-4o", Tier.FULL, Decimal("2.50"), Decimal("1.25"), Decimal("10.00"))


def build_policy() -> Policy:
    rules = {
        c["slug"]: CategoryRule(
            slug=c["slug"],
            mini=MINI,
            full=FULL,
            full_from=c["full_from_complexity"],
            always_full=c["always_full"],
            keywords=tuple(sorted(DEFAULT_CLASSIFIER_KEYWORDS.get(c["slug"], {}).items())),
            triggers=tuple(DEFAULT_CRITICAL_TRIGGERS.get(c["slug"], [])),
        )
        for c in DEFAULT_CATEGORIES
    }
    return Policy.build(
        version=1, categories=rules, default_category="chatbot", min_confidence=0.34
    )


def per_call_us(fn, repeat: int) -> float:
    fn()  # warm caches (compiled patterns)
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(repeat):
            fn()
        best = min(best, (time.perf_counter() - started) / repeat)
    return best * 1e6


def main() -> None:
    policy = build_policy()
    paragraph = (
        "Compare our subscription pricing with two competitors, analyse churn by cohort and "
        "propose a plan: must stay under $20, at least 3 tiers? Revenue 8,100 9,400 11,000. "
    )
    text = paragraph
    while tokens.count_text_tokens(text)[0] < 1000:
        text += paragraph
    n_tokens, source = tokens.count_text_tokens(text)
    short = "hey babe how was your day?"
    cases = {
        f"1,000-token prompt ({n_tokens} {source}), category inferred": RouteRequest(
            text=text, prompt_tokens=n_tokens
        ),
        "1,000-token prompt, category given": RouteRequest(
            text=text, prompt_tokens=n_tokens, category="strategy"
        ),
        "short chat message, category inferred": RouteRequest(text=short, prompt_tokens=10),
    }
    print(f"{'case':<62}{'µs/decision':>12}")
    for name, request in cases.items():
        us = per_call_us(lambda r=request: route(request=r, policy=policy), 2000)
        print(f"{name:<62}{us:>12.1f}")
    us = per_call_us(lambda: tokens.count_text_tokens(text), 500)
    print(f"{'tiktoken count of the 1,000-token prompt (before the engine)':<62}{us:>12.1f}")


if __name__ == "__main__":
    main()
