import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing.classifier import CategoryKeywords, Classification, classify, find_trigger
from routing.defaults import DEFAULT_CLASSIFIER_KEYWORDS, DEFAULT_CRITICAL_TRIGGERS
from routing.text_scan import WINDOW_HEAD_CHARS, WINDOW_TAIL_CHARS

CATEGORIES = (
    CategoryKeywords("chatbot", {"babe": 2.0, "miss you": 2.0, "hey": 1.0}),
    CategoryKeywords("legal", {"contract": 2.0, "clause": 2.0, "sue": 2.0, "party": 0.5}),
    CategoryKeywords("marketing", {"caption": 2.0, "hashtag": 2.0, "trade-off": 1.0}),
)
DEFAULTS = tuple(
    CategoryKeywords(slug, keywords) for slug, keywords in DEFAULT_CLASSIFIER_KEYWORDS.items()
)


def _classify(text: str, categories=CATEGORIES, min_confidence: float = 0.34) -> Classification:
    return classify(
        text, categories=categories, default_category="chatbot", min_confidence=min_confidence
    )


def test_picks_the_category_with_the_highest_keyword_weight():
    result = _classify("Can you check this contract clause for me?")

    assert result == Classification("legal", round(4 / 5, 3), ("clause", "contract"), False)


def test_matching_is_case_insensitive():
    assert _classify("REVIEW THE CONTRACT").category == "legal"


def test_term_inside_a_longer_word_does_not_match():
    result = _classify("This issue is about the contractor's subcontract")

    assert result.matched == ()
    assert result.fell_back


def test_plurals_and_verb_forms_of_a_word_match():
    assert _classify("The contracts were signed").matched == ("contract",)
    assert _classify("She sued him").matched == ("sue",)
    assert _classify("Add some hashtags").matched == ("hashtag",)


def test_phrase_matches_across_punctuation_but_needs_consecutive_words():
    assert _classify("The trade‑off (see above) is Trade-Off").matched == ("trade-off",)
    assert _classify("I miss... you!").matched == ("miss you",)
    assert _classify("I miss the way you talk").category == "chatbot"
    assert _classify("I miss the way you talk").matched == ()


def test_emoji_and_curly_quotes_separate_words():
    assert find_trigger("I want my refund😡", ["refund"]) == "refund"
    assert find_trigger("Don’t leave", ["don't"]) == "don't"


def test_a_repeated_term_counts_once():
    once = _classify("contract")
    many = _classify("contract contract contract contracts")

    assert many.confidence == once.confidence


def test_confidence_is_top_score_over_all_scores_plus_one():
    result = _classify("hey, about the contract")

    assert result.category == "legal"
    assert result.confidence == round(2.0 / (2.0 + 1.0 + 1.0), 3)


def test_single_weak_hit_is_not_confident():
    result = _classify("the other party")

    assert result.confidence == round(0.5 / 1.5, 3)
    assert result.fell_back


def test_low_confidence_falls_back_to_default_category():
    result = _classify("hey, about the contract", min_confidence=0.6)

    assert result.category == "chatbot"
    assert result.fell_back
    assert result.confidence == 0.5
    assert result.matched == ("hey",)  # the returned category's terms


def test_no_match_falls_back_with_zero_confidence():
    result = _classify("lorem ipsum", min_confidence=0.0)

    assert result == Classification("chatbot", 0.0, (), fell_back=True)


def test_default_category_outside_the_list_is_allowed():
    result = classify(
        "lorem", categories=CATEGORIES, default_category="general", min_confidence=0.3
    )

    assert (result.category, result.fell_back) == ("general", True)


def test_tie_goes_to_more_matched_terms_then_to_the_earlier_category():
    categories = (
        CategoryKeywords("a", {"alpha": 2.0}),
        CategoryKeywords("b", {"beta": 1.0, "gamma": 1.0}),
        CategoryKeywords("c", {"delta": 2.0}),
    )

    assert _classify("alpha beta gamma", categories, 0).category == "b"
    assert _classify("alpha delta", categories, 0).category == "a"


def test_a_keyword_of_two_categories_scores_for_both_and_its_forms_count_once():
    categories = (
        CategoryKeywords("legal", {"refund": 1.0, "contract": 2.0}),
        CategoryKeywords("chatbot", {"refund": 1.0}),
    )

    result = _classify("refund, refunds, refunded: see the contract", categories, 0)

    assert result == Classification(
        "legal", round(3 / (3 + 1 + 1), 3), ("contract", "refund"), False
    )


def test_matched_terms_are_heaviest_first():
    result = _classify("the party may sue over this clause")

    assert result.matched == ("clause", "sue", "party")


def test_non_positive_weights_are_ignored():
    categories = (CategoryKeywords("legal", {"contract": 0.0, "court": -1.0}),)

    assert _classify("contract court", categories, 0).fell_back


def test_category_keywords_are_frozen_and_hashable_by_content():
    keywords = {"contract": 2.0}
    category = CategoryKeywords("legal", keywords)

    keywords["contract"] = 0.0

    assert category.keywords["contract"] == 2.0
    assert hash(category) == hash(CategoryKeywords("legal", {"contract": 2.0}))
    assert category == CategoryKeywords("legal", {"contract": 2.0})
    with pytest.raises(TypeError):
        category.keywords["contract"] = 1.0  # type: ignore[index]


def test_phrase_found_even_when_its_words_also_appear_apart():
    text = "miss the bus, miss... you, then you"

    assert _classify(text).matched == ("miss you",)


def test_a_long_text_is_read_at_its_start_and_its_end():
    filler = "lorem ipsum dolor " * 400

    start = _classify("Check this contract. " + filler)
    end = _classify(filler + " Can they sue me?")
    middle = _classify(filler[:1500] + " contract clause " + filler[:1500])

    assert (start.category, end.category) == ("legal", "legal")
    assert middle.fell_back
    assert len(filler) > WINDOW_HEAD_CHARS + WINDOW_TAIL_CHARS


@pytest.mark.parametrize("at", [0, 700, 790, 2000, 4000, 5990])
def test_a_trigger_is_found_anywhere_in_a_long_text(at):
    filler = "lorem ipsum dolor sit amet " * 240  # 6,480 characters
    text = filler[:at] + " we will file a lawsuit " + filler[at:]

    assert find_trigger(text, ["chargeback", "lawsuit"]) == "lawsuit"
    assert find_trigger(text, ["chargeback"]) is None


FILLER = "lorem ipsum dolor sit amet " * 240  # 6,480 characters, far past the window


@pytest.mark.parametrize(
    ("written", "term"),
    [
        ("money   back", "money back"),
        ("money... back", "money back"),
        ("money —\n\tback", "money back"),
        ("MONEY😡BACK", "money back"),
        ("how OLD, are... you", "how old are you"),
        ("self‑harm", "self-harm"),
        ("self harm", "self-harm"),
    ],
)
def test_a_phrase_matches_across_any_run_of_separators(written, term):
    assert find_trigger(f"please, {written}!", [term]) == term
    assert find_trigger(f"{FILLER[:3000]} {written} {FILLER[:3000]}", [term]) == term


def test_a_phrase_in_the_window_matches_across_any_run_of_separators():
    categories = (CategoryKeywords("chatbot", {"how was your day": 2.0}),)

    short = _classify("so... how WAS -- your, day?", categories)
    long = _classify(FILLER + " so... how WAS -- your, day?", categories)

    assert short.matched == long.matched == ("how was your day",)


@pytest.mark.parametrize(
    ("written", "term"),
    [
        ("refunded", "refund"),
        ("Refunds", "refund"),
        ("suing", "sue"),
        ("sued", "sue"),
        ("flagged", "flag"),
        ("replies", "reply"),
        ("dying", "die"),
    ],
)
def test_trigger_inflections_are_found_in_the_middle_of_a_long_text(written, term):
    text = FILLER[:3000] + f" they {written} it " + FILLER[:3000]

    assert find_trigger(text, ["chargeback", term]) == term


@pytest.mark.parametrize("text", ["an issue", "a minority", "the refundable part", "pursued"])
def test_a_trigger_inside_a_longer_word_is_not_found(text):
    terms = ["sue", "minor", "refund"]

    assert find_trigger(text, terms) is None
    assert find_trigger(FILLER[:3000] + f" {text} " + FILLER[:3000], terms) is None


def test_adjacent_triggers_are_all_found_and_the_first_listed_wins():
    text = FILLER[:3000] + " refund chargeback " + FILLER[:3000]

    assert find_trigger(text, ["chargeback", "refund"]) == "chargeback"
    assert find_trigger(text, ["refund", "chargeback"]) == "refund"


def test_the_first_listed_trigger_wins_over_the_whole_text():
    text = "I want a refund. " + FILLER + " Or I will call my lawyer."

    assert find_trigger(text, ["lawyer", "refund"]) == "lawyer"
    assert find_trigger(FILLER[:2000] + " lawyer " + FILLER + " refund", ["lawyer", "refund"]) == (
        "lawyer"
    )


def test_a_word_cut_by_the_window_edge_is_not_a_trigger():
    # The window's tail starts inside "secure"; only whole words of the text count.
    text = FILLER + "is it secure " + "x" * (WINDOW_TAIL_CHARS - 5)

    assert text[-WINDOW_TAIL_CHARS:].startswith("cure ")
    assert find_trigger(text, ["cure"]) is None


def test_trigger_is_found_at_the_end_of_a_long_conversation():
    history = "hey babe how was your day? " * 100

    assert find_trigger(history + "I want my money back now", ["money back"]) == "money back"


def test_terms_compiled_after_the_text_was_read_are_found_in_it():
    text = "please escalate this chargeback"
    assert _classify(text).category == "chatbot"  # reads the text before the terms exist

    assert find_trigger(text, ["escalate"]) == "escalate"
    assert _classify(text, (CategoryKeywords("billing", {"chargeback": 2.0}),), 0).matched == (
        "chargeback",
    )


@given(text=st.text(max_size=300))
def test_result_does_not_depend_on_which_string_object_is_passed(text):
    copy = ("x" + text)[1:]  # equal, but another object: nothing is reused

    assert _classify(text, DEFAULTS) == _classify(copy, DEFAULTS)


def test_an_edited_policy_is_used_at_once():
    before = _classify("new caption", (CategoryKeywords("marketing", {"caption": 2.0}),), 0)

    after = _classify("new caption", (CategoryKeywords("marketing", {"post": 2.0}),), 0)

    assert (before.fell_back, after.fell_back) == (False, True)


def test_find_trigger_returns_the_first_listed_term_present():
    terms = ["suicide", "chargeback", "refund"]

    assert find_trigger("refund or I file a chargeback", terms) == "chargeback"


def test_find_trigger_matches_whole_words_and_phrases_only():
    terms = ["minor", "sue", "how old are you"]

    assert find_trigger("a minority issue", terms) is None
    assert find_trigger("Hey... how old are you??", terms) == "how old are you"
    assert find_trigger("I'll be suing you", terms) == "sue"


def test_find_trigger_with_no_terms_finds_nothing():
    assert find_trigger("chargeback", []) is None
    assert find_trigger("", ["chargeback"]) is None


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("hey babe, miss you! how was your day?", "chatbot"),
        ("Is this ok to post? 'you people are vermin and disgusting'", "moderation"),
        ("Write an Instagram caption with 3 hashtags for my new promo", "marketing"),
        ("How many subscribers did I gain last month on average per day?", "analytics"),
        ("Build a cohort retention regression and forecast churn for Q3", "analytics_plus"),
        ("Draft a 90-day growth strategy to beat our competitors on market share", "strategy"),
        ("Does our privacy policy meet GDPR data retention rules?", "compliance"),
        ("Fix this Python function: it raises an exception on an empty array", "code"),
        ("Can they sue me for breach of contract over this clause?", "legal"),
    ],
)
def test_default_keywords_classify_typical_requests(text, category):
    assert _classify(text, DEFAULTS).category == category


@pytest.mark.parametrize(
    ("category", "text", "trigger"),
    [
        ("chatbot", "I want a refund or I'll do a chargeback", "chargeback"),
        ("chatbot", "btw how old are you?", "how old are you"),
        ("moderation", "he said he would kill you", "kill you"),
        ("marketing", "Promise them guaranteed income in the caption", "guaranteed income"),
    ],
)
def test_default_triggers_catch_critical_messages(category, text, trigger):
    assert find_trigger(text, DEFAULT_CRITICAL_TRIGGERS[category]) == trigger


def test_default_lists_cover_every_category_with_a_reasonable_size():
    assert set(DEFAULT_CLASSIFIER_KEYWORDS) == set(DEFAULT_CRITICAL_TRIGGERS)
    for keywords in DEFAULT_CLASSIFIER_KEYWORDS.values():
        assert 15 <= len(keywords) <= 40
        assert all(term == term.lower() and weight > 0 for term, weight in keywords.items())
    for triggers in DEFAULT_CRITICAL_TRIGGERS.values():
        assert len(triggers) <= 40
        assert len(set(triggers)) == len(triggers)


@given(text=st.text(max_size=2_000), min_confidence=st.floats(0, 1))
def test_result_is_always_consistent(text, min_confidence):
    result = _classify(text, DEFAULTS, min_confidence)

    assert 0.0 <= result.confidence < 1.0
    assert result.category in DEFAULT_CLASSIFIER_KEYWORDS
    assert result.fell_back == (result.confidence < min_confidence or not result.confidence)
    assert set(result.matched) <= set(DEFAULT_CLASSIFIER_KEYWORDS[result.category])


@given(text=st.text(max_size=500), terms=st.lists(st.text(max_size=20), max_size=10))
def test_find_trigger_returns_one_of_the_terms_or_none(text, terms):
    assert find_trigger(text, terms) in [*terms, None]
