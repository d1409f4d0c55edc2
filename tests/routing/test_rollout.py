import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing.engine import RouteRequest, route
from routing.policy import Arm, Policy
from routing.rollout import FlagRule, flag_on, in_share, rollout_bucket, rollout_subject
from tests.routing.test_engine import RULES

percents = st.decimals(min_value=0, max_value=100, places=2, allow_nan=False)


@given(
    subjects=st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=30),
    steps=st.lists(percents, min_size=2, max_size=6),
)
def test_raising_the_percentage_never_moves_a_user_back_to_control(subjects, steps):
    steps = sorted(steps)
    for subject in subjects:
        arms = [in_share(subject=subject, percent=p) for p in steps]
        # once routed, routed at every larger share
        assert arms == sorted(arms)


def test_zero_and_hundred_percent_are_none_and_all():
    users = [f"user:{n}" for n in range(500)]
    assert not any(in_share(subject=u, percent=Decimal("0")) for u in users)
    assert all(in_share(subject=u, percent=Decimal("100")) for u in users)


def test_ten_percent_routes_about_ten_percent_of_users():
    users = [f"user:fan-{n}" for n in range(20_000)]
    share = sum(in_share(subject=u, percent=Decimal("10")) for u in users) / len(users)
    assert 0.09 < share < 0.11


def test_assignment_is_sticky_and_keyed_on_user_else_api_key():
    assert rollout_bucket("user:fan-1") == rollout_bucket("user:fan-1")
    assert rollout_subject(end_user="fan-1", api_key_id=3) == "user:fan-1"
    assert rollout_subject(end_user="", api_key_id=3) == "key:3"


def test_flag_limited_to_listed_keys_and_to_a_share():
    keys_only = FlagRule("streaming", True, api_key_ids=frozenset({7}))
    assert flag_on(keys_only, subject="user:a", api_key_id=7)
    assert not flag_on(keys_only, subject="user:a", api_key_id=8)
    half = FlagRule("response_cache", True, percent=Decimal("50"))
    on = sum(flag_on(half, subject=f"user:{n}", api_key_id=1) for n in range(4000))
    assert 1800 < on < 2200
    assert not flag_on(FlagRule("routing", False), subject="user:a", api_key_id=1)


def _policy(percent: str, routing_on: bool = True) -> Policy:
    flags = {"routing": FlagRule("routing", routing_on)}
    return Policy.build(
        version=1,
        categories=RULES,
        default_category="chatbot",
        min_confidence=0.3,
        routed_percent=Decimal(percent),
        flags=flags,
    )


def test_control_arm_gets_the_legacy_premium_model():
    request = RouteRequest(text="hi", prompt_tokens=10, category="chatbot", subject="user:x")
    decision = route(request=request, policy=_policy("0"))
    assert decision.arm is Arm.CONTROL
    assert decision.model.name == "gpt-4o"
    assert decision.reason_code == "control:legacy"


def test_routing_flag_off_puts_everyone_in_control():
    request = RouteRequest(text="hi", prompt_tokens=10, category="chatbot", subject="user:x")
    assert route(request=request, policy=_policy("100", routing_on=False)).arm is Arm.CONTROL
    assert route(request=request, policy=_policy("100")).arm is Arm.ROUTED


@pytest.mark.django_db
def test_rollout_percentage_reaches_the_api_and_the_ledger(api_client, policy):
    from routing.experiments import rollout_set_percentage
    from usage.models import UsageRecord

    # given routing for 0% of users
    rollout_set_percentage(percent=Decimal("0"), actor="ops")
    body = {"messages": [{"role": "user", "content": "hey"}], "category": "chatbot"}
    # when a user calls
    data = api_client.post(
        "/api/v1/completions",
        json.dumps({**body, "user": "fan-1"}),
        content_type="application/json",
    ).json()
    # then the call is in the control arm, on the premium model
    assert data["reason"] == "control:legacy"
    assert data["model"] == "gpt-4o"
    assert UsageRecord.objects.get(request_id=data["id"]).arm == "control"
    # and at 100% the same user is routed
    rollout_set_percentage(percent=Decimal("100"), actor="ops")
    data = api_client.post(
        "/api/v1/completions",
        json.dumps({**body, "user": "fan-1"}),
        content_type="application/json",
    ).json()
    assert data["model"] == "gpt-4o-mini"
    assert UsageRecord.objects.get(request_id=data["id"]).arm == "routed"


@pytest.mark.django_db
def test_streaming_flag_off_refuses_streams(api_client, policy):
    from routing.models import FeatureFlag
    from routing.policy_versions import policy_version_create

    FeatureFlag.objects.filter(name="streaming").update(enabled=False)
    policy_version_create(actor="ops")
    body = {"messages": [{"role": "user", "content": "hey"}], "stream": True}
    response = api_client.post(
        "/api/v1/completions", json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "streaming_disabled"


@pytest.mark.django_db
def test_policy_change_reaches_a_worker_through_the_shared_version(policy, settings):
    from django.core.cache import cache

    from routing.experiments import rollout_set_percentage
    from routing.selectors import POLICY_VERSION_CACHE_KEY, policy_cache_clear, policy_get

    # given a worker that read the policy and checks again only after POLICY_REFRESH_S
    settings.POLICY_REFRESH_S = 3600
    assert policy_get().routed_percent == Decimal("100")
    # when another process publishes a new version (simulated: memo kept, cache updated)
    version = rollout_set_percentage(percent=Decimal("10"), actor="ops")
    cache.set(POLICY_VERSION_CACHE_KEY, version.pk)
    # then this process sees it (it made the change: the rollout is an experiment at 10%)
    # and a fresh one reads it once
    assert policy_get().experiment.treatment_percent == Decimal("10")
    policy_cache_clear()
    assert policy_get().version == version.pk
