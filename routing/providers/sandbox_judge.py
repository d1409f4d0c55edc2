"""The sandbox's judge: synthetic verdicts, as two models of different strength would earn them.

The stronger (premium) answer wins more often on harder requests and in harder categories. A
request's difficulty is its category's edge below plus a share per point of complexity
(routing.complexity's estimate of the request text, which the judge sees). The draw is a hash
of the seed, category, request and the pair of answers, so both orders get the same verdict
and a run is repeatable; another seed, another sample.
"""

import hashlib
import json

from routing import tokens

# How often the premium answer is better on the easiest request of each category (the
# seeded categories; any other sits in the middle).
CATEGORY_PREMIUM_EDGE = {
    "chatbot": 0.01,
    "moderation": 0.02,
    "marketing": 0.05,
    "analytics": 0.08,
    "strategy": 0.12,
    "analytics_plus": 0.15,
    "code": 0.15,
    "compliance": 0.20,
    "legal": 0.20,
}
DEFAULT_PREMIUM_EDGE = 0.08
PREMIUM_EDGE_PER_COMPLEXITY_POINT = 0.025
PREMIUM_EDGE_MAX = 0.9
JUDGE_TIE_SHARE = 0.4  # of the requests the premium answer does not win
JUDGE_POSITION_BIAS_SHARE = 0.1  # judges that pick the answer shown first, whatever it says
WEAK_MODEL_MARKS = ("mini", "nano")


def model_strength(model: str) -> int:
    """1 for a premium-class model, 0 for a small one (by its name, as the sandbox tags it)."""
    return 0 if any(mark in model for mark in WEAK_MODEL_MARKS) else 1


def premium_edge(*, category: str, complexity: float) -> float:
    """The share of requests on which the judge finds the stronger model's answer better."""
    edge = CATEGORY_PREMIUM_EDGE.get(category, DEFAULT_PREMIUM_EDGE)
    return min(edge + PREMIUM_EDGE_PER_COMPLEXITY_POINT * complexity, PREMIUM_EDGE_MAX)


def _judged_part(user: str, tag: str) -> str:
    return user.partition(f"[{tag}]\n")[2].partition(f"\n[/{tag}]")[0]


def _answer_model(answer: str) -> str:
    """The model in an answer's "[sandbox <model>]" tag ("" for any other text)."""
    head = answer.partition("]")[0]
    return head.removeprefix("[sandbox ") if head.startswith("[sandbox ") else ""


def judge_reply(user: str, *, seed: int) -> str:
    """A synthetic, deterministic judge verdict (shadow evaluation in the sandbox)."""
    from routing.complexity import estimate_complexity

    category = user.partition("[TASK CATEGORY] ")[2].partition("\n")[0].strip()
    request = _judged_part(user, "REQUEST")
    answers = _judged_part(user, "ANSWER A"), _judged_part(user, "ANSWER B")
    strength_a, strength_b = (model_strength(_answer_model(answer)) for answer in answers)
    # Sorted: the same pair shown in either order draws the same verdict.
    pair = "\n".join(sorted(answers))
    digest = hashlib.sha256(f"{seed}\n{category}\n{request}\n{pair}".encode()).digest()
    draw = int.from_bytes(digest[:4]) / 2**32
    if int.from_bytes(digest[4:8]) / 2**32 < JUDGE_POSITION_BIAS_SHARE:
        choice, reason = "A", "Answer A reads slightly better."
    elif strength_a == strength_b:
        choice, reason = "tie", "Both answers come from equally strong models."
    else:
        complexity = estimate_complexity(
            request, token_count=tokens.count_text_tokens(request)[0]
        ).score
        edge = premium_edge(category=category, complexity=complexity)
        stronger, weaker = ("A", "B") if strength_a > strength_b else ("B", "A")
        if draw < edge:
            choice, reason = stronger, "It covers more of the request, and gets it right."
        elif draw < edge + (1 - edge) * JUDGE_TIE_SHARE:
            choice, reason = "tie", "Both answer the request equally well."
        else:
            choice, reason = weaker, "It is as correct and more concise."
    return json.dumps({"verdict": choice, "reason": f"[sandbox judge] {reason}"})
