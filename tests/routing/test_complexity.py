import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing.complexity import ComplexityEstimate, estimate_complexity
from routing.text_scan import WINDOW_HEAD_CHARS, WINDOW_TAIL_CHARS

SIGNAL_NAMES = {
    "length",
    "questions",
    "steps",
    "code",
    "numbers",
    "tables",
    "reasoning",
    "constraints",
}

FAN_MESSAGE = "hey babe how was your day?"
CAPTION_REQUEST = (
    "Write an Instagram caption for my new beach photoshoot. Keep it playful and flirty, "
    "under 150 characters, and include 3 emojis and a call to action to subscribe."
)
WORD_PROBLEM = (
    "Janet’s ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes "
    "muffins for her friends every day with four. She sells the remainder at the farmers' market "
    "daily for $2 per fresh duck egg. How much in dollars does she make every day at the "
    "farmers' market?"
)
STRATEGY_REQUEST = """I run a creator account: 12k subscribers at $9.99/month, 8% monthly churn.
Build a 90-day growth strategy.
1. Compare three pricing options (discount, bundles, free trial) and analyse the trade-offs.
2. Plan the content calendar: at least 3 posts per week, but no more than 1 paid promo per week.
3. Forecast subscribers and revenue for each option, with assumptions.
4. Prioritise the actions by impact and effort.
The budget must stay under $2,000 and the summary must be no more than 200 words."""
CODE_SNIPPET = """def top_fans(tips, n):
    totals = {}
    for t in tips:
        totals[t['fan']] = totals.get(t['fan'], 0) + t['amount']
    result = sorted(((v, k) for k, v in totals.items()), reverse=True)
    return [fan for _, fan in result[:n]]"""
REFACTOR_REQUEST = (
    "Refactor this Python function so it is faster and easier to read, without changing its "
    "behaviour. Keep the public signature, add type hints and explain the complexity before and "
    f"after.\n\n```python\n{CODE_SNIPPET}\n```\nIt must handle 1 million tips in under a second "
    "and must not use pandas."
)
LAW_QUESTION = (
    "A landlord leased a building to a tenant for ten years. The lease required the tenant to "
    "keep the premises insured, but the tenant let the policy lapse because the premium rose. "
    "Two years later a fire, caused by a neighbour's negligence, destroyed the building. The "
    "landlord sued the tenant for the full value of the building, arguing that the tenant's "
    "breach of the insurance covenant caused the loss. The tenant argued that the fire would "
    "have occurred anyway and that the landlord should recover from the neighbour. If the court "
    "applies the majority rule, which of the following is the landlord's strongest argument? "
    "A. The covenant to insure runs with the land. B. The tenant assumed the risk of loss. "
    "C. Damages for breach of a covenant to insure are the amount the insurance would have paid. "
    "D. The neighbour's negligence is irrelevant because the tenant is strictly liable. Answer:"
)


def _estimate(text: str) -> ComplexityEstimate:
    return estimate_complexity(text, token_count=max(1, len(text) // 4))


def _points(estimate: ComplexityEstimate, name: str) -> float:
    return next((s.points for s in estimate.signals if s.name == name), 0.0)


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        (FAN_MESSAGE, 0.0, 2.0),
        (CAPTION_REQUEST, 2.0, 4.0),
        (WORD_PROBLEM, 4.0, 6.0),
        (LAW_QUESTION, 6.0, 9.0),
        (STRATEGY_REQUEST, 7.0, 10.0),
        (REFACTOR_REQUEST, 7.0, 10.0),
    ],
    ids=["fan", "caption", "word-problem", "law", "strategy", "refactor"],
)
def test_calibration_examples_land_in_their_bands(text, low, high):
    estimate = _estimate(text)

    assert low <= estimate.score <= high, estimate


def test_code_block_raises_complexity():
    request = "Make this function faster without changing its behaviour."
    plain = _estimate(f"{request}\n{CODE_SNIPPET}")

    fenced = _estimate(f"{request}\n```python\n{CODE_SNIPPET}\n```")

    assert fenced.score > plain.score
    assert "fenced code block" in next(s.detail for s in fenced.signals if s.name == "code")


def test_constraints_raise_complexity():
    base = "Write a short bio for my profile."

    constrained = _estimate(base + " It must be exactly 3 sentences, under 150 characters.")

    assert constrained.score > _estimate(base).score
    assert _points(constrained, "constraints") > 0


def test_length_limits_are_a_number_then_a_unit_word():
    estimate = _estimate("Give me 3 bullets, 150-characters each, 2  lines and 4 wordsmiths.")

    detail = next(s.detail for s in estimate.signals if s.name == "constraints")
    assert detail.startswith("2 length limits")


def test_reasoning_vocabulary_raises_complexity():
    base = "Tell me about my two pricing options."

    reasoning = _estimate(base + " Compare them, analyse the trade-offs and justify a plan.")

    assert _points(reasoning, "reasoning") >= 2.0
    assert reasoning.score > _estimate(base).score


@pytest.mark.parametrize(
    "written", ["step by step", "Step-by-Step", "step... by — step", "step  by\nstep"]
)
def test_vocabulary_phrases_match_across_any_run_of_separators(written):
    estimate = _estimate(f"Explain it {written}.")

    assert "step by step" in next(s.detail for s in estimate.signals if s.name == "steps")


def test_vocabulary_plurals_match_and_a_longer_word_does_not():
    assert _points(_estimate("Give me the forecasts."), "reasoning") == 0.7
    assert _points(_estimate("Ask the forecasters."), "reasoning") == 0.0


def test_numbered_list_counts_as_steps():
    estimate = _estimate("Do this:\n1. Draft the post\n2. Pick a photo\n3. Schedule it\n")

    assert _points(estimate, "steps") == pytest.approx(3 * 0.35)


def test_markdown_table_counts_as_table():
    table = "| month | subs |\n|---|---|\n| Jan | 120 |\n| Feb | 180 |\n| Mar | 260 |\n"

    estimate = _estimate("Summarise this:\n" + table)

    assert _points(estimate, "tables") > 0


def test_run_of_question_marks_is_one_question():
    estimate = estimate_complexity("are you there???", token_count=5)

    assert estimate.signals[0].detail == "1 question"


def test_length_adds_one_point_per_doubling_past_twenty_tokens():
    scores = [estimate_complexity("", token_count=n).score for n in (20, 40, 80, 160, 10_000)]

    assert scores == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_each_signal_is_capped():
    estimate = estimate_complexity("why? " * 200, token_count=10)

    assert _points(estimate, "questions") == 2.0


def test_total_is_capped_at_ten():
    text = STRATEGY_REQUEST + "\n" + REFACTOR_REQUEST

    assert estimate_complexity(text, token_count=100_000).score == 10.0


def test_signals_are_the_contributing_ones_with_most_points_first():
    estimate = _estimate(STRATEGY_REQUEST)

    points = [s.points for s in estimate.signals]
    assert points == sorted(points, reverse=True)
    assert all(p > 0 for p in points)
    assert {s.name for s in estimate.signals} <= SIGNAL_NAMES
    assert estimate.score == round(min(10.0, sum(points)), 1)


def test_signals_explain_themselves():
    estimate = estimate_complexity("Can you compare these two plans?", token_count=1_240)

    details = {s.name: s.detail for s in estimate.signals}
    assert details["length"] == "1,240 tokens"
    assert details["questions"] == "1 question"
    assert details["reasoning"] == "compare, plan"


def test_empty_text_scores_zero_with_no_signals():
    assert estimate_complexity("", token_count=0) == ComplexityEstimate(score=0.0, signals=())


def test_instruction_after_long_pasted_text_is_still_read():
    pasted = "The quick brown fox jumps over the lazy dog. " * 200
    instruction = "Compare the options and forecast the revenue impact."

    estimate = estimate_complexity(pasted + instruction, token_count=2_000)

    assert _points(estimate, "reasoning") > 0


def test_estimate_is_deterministic():
    assert _estimate(REFACTOR_REQUEST) == _estimate(REFACTOR_REQUEST)


@given(text=st.text(max_size=3_000), token_count=st.integers(-10, 10**7))
def test_score_is_always_between_zero_and_ten(text, token_count):
    estimate = estimate_complexity(text, token_count=token_count)

    assert 0.0 <= estimate.score <= 10.0
    assert estimate.score == round(estimate.score, 1)


@given(text=st.text(max_size=500), tokens=st.integers(0, 10**6), more=st.integers(0, 10**6))
def test_more_tokens_never_lower_the_score(text, tokens, more):
    before = estimate_complexity(text, token_count=tokens).score

    assert estimate_complexity(text, token_count=tokens + more).score >= before


WINDOW = WINDOW_HEAD_CHARS + WINDOW_TAIL_CHARS


@given(
    text=st.text(max_size=WINDOW // 2),
    suffix=st.text(max_size=WINDOW // 2 - 1),
    tokens=st.integers(0, 5_000),
    more=st.integers(0, 5_000),
)
def test_appending_text_never_lowers_the_score_within_the_window(text, suffix, tokens, more):
    # The whole text fits in the window here; past it only the head and tail are read.
    before = estimate_complexity(text, token_count=tokens).score

    after = estimate_complexity(text + " " + suffix, token_count=tokens + more).score

    assert after >= before


@given(
    text=st.text(max_size=WINDOW // 2),
    addition=st.sampled_from(
        [
            "And why?",
            "What would you change first?",
            "It must be under 100 words.",
            "Do not use hashtags.",
            "Use at least 3 examples and no more than 5 bullet points.",
        ]
    ),
)
def test_adding_a_question_or_constraint_never_lowers_the_score(text, addition):
    before = estimate_complexity(text, token_count=len(text) // 4).score

    after = estimate_complexity(text + " " + addition, token_count=(len(text) + 40) // 4).score

    assert after >= before


@pytest.mark.parametrize(
    ("text", "name", "detail"),
    [
        # Code and table marks are looked for in the window's characters and counted in its
        # UTF-8 bytes: non-ASCII neighbours (emoji, accents, a lone surrogate) change neither.
        ("😀 {x} 😀", "code", "2 code symbols"),
        ("é f();\n g();\n", "code", "4 code symbols"),
        ("\ud800|a|\n|b|\n|c|\n", "tables", "3 table rows"),
        ("“hi”\n😀,1,2,\né,3,4,\nx,5,6,", "tables", "3 table rows"),
    ],
)
def test_code_and_table_marks_are_found_next_to_non_ascii_text(text, name, detail):
    estimate = estimate_complexity(text, token_count=len(text) // 4)

    assert (name, detail) in [(s.name, s.detail) for s in estimate.signals]


def test_text_without_vocabulary_still_gets_its_other_signals():
    # No vocabulary term: the terms found are the shared empty ones, the rest is read as usual.
    estimate = estimate_complexity("hey babe, 3 pics? {x} 😘", token_count=5)

    assert [s.name for s in estimate.signals] == ["questions", "numbers", "code"]
    assert [s.detail for s in estimate.signals] == ["1 question", "1 number", "2 code symbols"]


def test_a_detail_names_four_terms_in_sorted_order_then_how_many_more():
    text = (
        "Why analyze and compare the strategy, its trade-off and risk, and plan? Hence, prove it."
    )
    estimate = estimate_complexity(text, token_count=30)

    detail = next(s.detail for s in estimate.signals if s.name == "reasoning")
    # analyze, compare, hence, plan, prove, risk, strategy, trade-off, why: 1.0 x 6 + 0.5 x 3
    assert detail == "analyze, compare, hence, plan +5 more"
    assert _points(estimate, "reasoning") == 3.0  # 0.7 x 7.5, capped
    words = estimate_complexity("hence why", token_count=5)
    assert _points(words, "reasoning") == 0.7  # two half-weight terms


def test_signals_from_the_memo_equal_fresh_ones():
    from routing import complexity

    memos = [getattr(complexity, n) for n in dir(complexity) if n.endswith("_signal")]
    memos = [memo for memo in memos if hasattr(memo, "cache_clear")]
    texts = [STRATEGY_REQUEST, CAPTION_REQUEST, FAN_MESSAGE, "1. a\n2. b\n| x |\n| y |\n| z |"]
    remembered = [estimate_complexity(t, token_count=len(t) // 4) for t in texts]
    for memo in memos:
        memo.cache_clear()
    assert [estimate_complexity(t, token_count=len(t) // 4) for t in texts] == remembered
    assert len(memos) == 8
