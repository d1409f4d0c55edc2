"""The sandbox as a judge: two models of different strength, seeded, as production's shadow
evaluation would see them (premium wins more on harder requests and categories)."""

import json

from routing.providers import sandbox_chat
from routing.quality import (
    JUDGE_ORDERS,
    Verdict,
    combine_verdicts,
    judge_messages,
    judge_pair,
    judge_parse,
    order_verdict,
)

EASY = "good morning sunshine, loved {n}"
HARD = (
    "Plan a 90-day growth strategy for {n}. Explain your reasoning step by step. Compare at "
    "least three options and analyse the trade-offs of each. What are the risks? How would "
    "you mitigate them? Which metric proves it worked?"
)


def _judged(*, category: str, request: str, cheap: str, premium: str) -> Verdict:
    """Ask the sandbox judge in both orders through its chat-completions handler."""
    verdicts = []
    for order in JUDGE_ORDERS:
        answer_a, answer_b = judge_pair(order=order, cheap=cheap, premium=premium)
        messages = judge_messages(
            request_text=request, answer_a=answer_a, answer_b=answer_b, category=category
        )
        body = {"model": "gpt-4o", "messages": messages, "temperature": 0}
        status, _, payload = sandbox_chat.handle("/v1/chat/completions", json.dumps(body).encode())
        assert status == 200
        reply = judge_parse(json.loads(payload)["choices"][0]["message"]["content"])
        verdicts.append(order_verdict(order=order, choice=reply.choice))
    return combine_verdicts(*verdicts)


def _premium_share(category: str, template: str, n: int = 300) -> float:
    wins = 0
    for i in range(n):
        request = template.format(n=f"drop #{i}")
        verdict = _judged(
            category=category,
            request=request,
            cheap=f"[sandbox gpt-4o-mini] answer {i}",
            premium=f"[sandbox gpt-4o] answer {i}",
        )
        wins += verdict is Verdict.PREMIUM_BETTER
    return wins / n


def test_the_premium_answer_wins_more_often_on_harder_requests_and_in_harder_categories():
    # when the judge compares many cheap and premium answers
    easy_chat = _premium_share("chatbot", EASY)
    hard_chat = _premium_share("chatbot", HARD)
    easy_legal = _premium_share("compliance", EASY)
    hard_legal = _premium_share("compliance", HARD)
    # then the premium model wins sometimes, more with a harder request or category
    assert 0 < easy_chat < 0.05
    assert easy_chat < hard_chat and easy_chat < easy_legal
    assert easy_legal < hard_legal and hard_chat < hard_legal
    assert hard_legal < 0.95  # never every time: judged answers still tie or go cheap


def test_verdicts_are_repeatable_with_a_seed_and_another_seed_draws_another_sample(
    sandbox_state,
):
    def sample() -> list[Verdict]:
        return [
            _judged(
                category="marketing",
                request=HARD.format(n=f"set {i}"),
                cheap=f"[sandbox gpt-4o-mini] caption {i}",
                premium=f"[sandbox gpt-4o] caption {i}",
            )
            for i in range(60)
        ]

    first, again = sample(), sample()
    sandbox_state.judge_seed = 11
    other = sample()
    assert first == again
    assert other != first
    assert {Verdict.PREMIUM_BETTER, Verdict.TIE, Verdict.CHEAP_BETTER} <= set(first + other)


def test_answers_of_equally_strong_models_tie():
    verdicts = {
        _judged(
            category="strategy",
            request=HARD.format(n=i),
            cheap=f"[sandbox gpt-4o] one {i}",
            premium=f"[sandbox gpt-4.1] two {i}",
        )
        for i in range(40)
    }
    assert verdicts == {Verdict.TIE}
