import dataclasses
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing.engine import Decision, RouteRequest, RoutingError, decide, route
from routing.policy import CategoryRule, ModelSpec, Policy, Tier
from routing.seed_data import DEFAULT_CATEGORIES, seeded_price_rows

MINI = ModelSpec("gpt-4o-mini", Tier.MINI, seeded_price_rows("gpt-4o-mini"))
FULL = ModelSpec("gpt-4o", Tier.FULL, seeded_price_rows("gpt-4o"))

RULES = {
    c["slug"]: CategoryRule(
        slug=c["slug"],
        mini=MINI,
        full=FULL,
        full_from=c["full_from_complexity"],
        always_full=c["always_full"],
        expected_output_tokens=c["expected_output_tokens"],
        max_output_tokens=c["max_output_tokens"],
        keywords=(("refund", 1.0),) if c["slug"] == "chatbot" else (),
        triggers=("chargeback",) if c["slug"] == "chatbot" else (),
    )
    for c in DEFAULT_CATEGORIES
}
POLICY = Policy.build(version=3, categories=RULES, default_category="chatbot", min_confidence=0.3)


def _route(category: str | None, complexity: float | None = None, critical=None, text="hi"):
    request = RouteRequest(
        text=text, prompt_tokens=100, category=category, complexity=complexity, critical=critical
    )
    return route(request=request, policy=POLICY)


@pytest.mark.parametrize(
    ("category", "complexity", "critical", "tier", "reason"),
    [
        ("chatbot", 0, None, "mini", "default:mini"),
        ("chatbot", 10, None, "mini", "default:mini"),
        ("moderation", 10, None, "mini", "default:mini"),
        ("marketing", 9.9, None, "mini", "default:mini"),
        ("analytics", 10, None, "mini", "default:mini"),
        ("strategy", 6.9, None, "mini", "default:mini"),
        ("strategy", 7, None, "full", "complexity>=7:category=strategy"),
        ("analytics_plus", 6, None, "mini", "default:mini"),
        ("analytics_plus", 7, None, "full", "complexity>=7:category=analytics_plus"),
        ("code", 6.99, None, "mini", "default:mini"),
        ("code", 10, None, "full", "complexity>=7:category=code"),
        ("compliance", 0, None, "full", "critical:category=compliance"),
        ("legal", 0, False, "full", "critical:category=legal"),
        ("chatbot", 0, True, "full", "critical:caller"),
        ("marketing", 2, True, "full", "critical:caller"),
    ],
)
def test_decision_matrix(category, complexity, critical, tier, reason):
    decision = _route(category, complexity, critical)
    assert decision.tier == tier
    assert decision.reason_code == reason
    assert decision.model.name == ("gpt-4o" if tier == "full" else "gpt-4o-mini")
    assert decision.category == category
    assert decision.policy_version == 3


def test_trigger_term_makes_request_critical():
    decision = _route("chatbot", 1, text="I will file a chargeback tomorrow")
    assert decision.tier == Tier.FULL
    assert decision.reason_code == "critical:trigger:category=chatbot"
    assert "chargeback" in decision.reason_text
    assert decision.critical


def test_trigger_term_deep_inside_a_long_prompt_makes_request_critical():
    filler = "Here is some pasted material about the launch calendar. " * 100  # 5,700 characters
    text = filler + "Fans said they would file chargebacks. " + filler

    decision = _route("chatbot", 1, text=text)

    assert decision.tier == Tier.FULL
    assert decision.reason_code == "critical:trigger:category=chatbot"


def test_caller_cannot_downgrade_a_trigger_with_critical_false():
    decision = _route("chatbot", 1, critical=False, text="chargeback incoming")
    assert decision.tier == Tier.FULL


def test_unknown_category_is_a_routing_error():
    with pytest.raises(RoutingError) as error:
        _route("astrology")
    assert error.value.code == "unknown_category"
    assert error.value.field == "category"


def test_disabled_category_is_a_routing_error():
    rules = {**RULES, "code": CategoryRule(slug="code", mini=MINI, full=FULL, enabled=False)}
    policy = Policy.build(version=1, categories=rules, default_category="chatbot", min_confidence=0)
    with pytest.raises(RoutingError) as error:
        route(request=RouteRequest(text="x", prompt_tokens=1, category="code"), policy=policy)
    assert error.value.code == "category_disabled"


def test_caller_complexity_overrides_the_estimator():
    decision = _route("strategy", 8)
    assert decision.complexity == 8
    assert decision.complexity_source == "caller"
    assert decision.complexity_signals == ()


def test_estimator_complexity_is_used_and_explained_when_caller_gives_none():
    text = "Step by step: compare three pricing strategies, 1) 2) 3), and forecast revenue? " * 5
    decision = _route("strategy", None, text=text)
    assert decision.complexity_source == "estimator"
    assert 0 <= decision.complexity <= 10
    assert decision.complexity_signals


def test_estimated_cost_uses_prompt_tokens_and_expected_output_at_model_prices():
    decision = _route("chatbot", 1)
    # 100 prompt tokens x 0.15 + 120 expected output x 0.60, per million
    assert decision.estimated_cost_usd == Decimal("0.0000870000")


def test_max_tokens_caps_the_expected_output():
    request = RouteRequest(text="hi", prompt_tokens=100, category="chatbot", max_tokens=10)
    decision = route(request=request, policy=POLICY)
    assert decision.expected_output_tokens == 10
    assert decision.max_output_tokens == 10


def test_category_is_inferred_when_not_given():
    decision = _route(None, 1, text="I want a refund for my refund request, refund now")
    assert decision.category == "chatbot"
    assert decision.category_source in {"classifier", "default"}


@given(
    slug=st.sampled_from(sorted(RULES)),
    low=st.floats(0, 10, allow_nan=False),
    high=st.floats(0, 10, allow_nan=False),
)
def test_raising_complexity_never_moves_full_to_mini(slug, low, high):
    low, high = sorted((low, high))
    rule = RULES[slug]
    before = decide(rule=rule, complexity=low, critical_by=None)
    after = decide(rule=rule, complexity=high, critical_by=None)
    assert not (before.tier == Tier.FULL and after.tier == Tier.MINI)


@given(slug=st.sampled_from(sorted(RULES)), complexity=st.floats(0, 10, allow_nan=False))
def test_critical_is_always_full(slug, complexity):
    decision = _route(slug, complexity, critical=True)
    assert decision.tier == Tier.FULL
    assert decision.reason_code.startswith("critical")


def test_route_gives_every_decision_field_and_the_decision_stays_frozen():
    # route() fills the Decision without its __init__: a field it forgot would be missing.
    decision = _route(None, text="I need a chargeback on my refund")

    assert set(vars(decision)) == {f.name for f in dataclasses.fields(Decision)}
    rebuilt = Decision(**vars(decision))
    assert rebuilt == decision
    assert repr(rebuilt) == repr(decision)
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.tier = Tier.MINI
    assert dataclasses.replace(decision, tier=Tier.MINI).tier is Tier.MINI
