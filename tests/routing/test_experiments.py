"""Policy experiments: the sticky assignment and each arm's decision (pure), and the services
that start, step, step back, stop and finish them."""

from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing.engine import RouteRequest, route
from routing.policy import ModelSpec, Policy, Tier
from routing.pricing import PriceRow
from routing.rollout import experiment_split, in_share
from tests.routing.test_engine import RULES

SUBJECTS = [f"user:fan-{n}" for n in range(4000)]
NEW_MINI = ModelSpec(
    "gpt-5-mini", Tier.MINI, (PriceRow(Decimal("0.25"), Decimal("0.025"), Decimal("2.00")),)
)


def _split(percent: str, salt: str = "experiment-7:") -> Policy:
    control = Policy.build(
        version=1, categories=RULES, default_category="chatbot", min_confidence=0.3
    )
    chatbot = replace(RULES["chatbot"], mini=NEW_MINI)
    treatment = Policy.build(
        version=2,
        categories={**RULES, "chatbot": chatbot},
        default_category="chatbot",
        min_confidence=0.3,
    )
    return experiment_split(
        experiment_id=7, percent=Decimal(percent), salt=salt, control=control, treatment=treatment
    )


def _treated(policy: Policy) -> set[str]:
    return {s for s in SUBJECTS if policy.experiment.in_treatment(s)}


def test_raising_the_treatment_share_only_adds_subjects_and_keeps_them():
    ten, fifty, hundred = (_treated(_split(p)) for p in ("10", "50", "100"))
    assert ten < fifty < hundred == set(SUBJECTS)
    assert 0.08 < len(ten) / len(SUBJECTS) < 0.12
    assert 0.47 < len(fifty) / len(SUBJECTS) < 0.53
    # sticky: the same subjects every time
    assert ten == _treated(_split("10"))


@given(steps=st.lists(st.integers(min_value=1, max_value=100), min_size=2, max_size=5))
def test_no_step_up_moves_a_subject_back_to_control(steps):
    splits = [_split(str(p)).experiment for p in sorted(steps)]
    for subject in SUBJECTS[:200]:
        arms = [split.in_treatment(subject) for split in splits]
        assert arms == sorted(arms)


def test_each_experiment_picks_its_own_subjects():
    first, second = _treated(_split("10", "experiment-1:")), _treated(_split("10", "experiment-2:"))
    # independent 10% samples share about 1% of subjects, not 10%
    assert len(first & second) / len(SUBJECTS) < 0.03


def test_the_rollout_experiment_keeps_the_unsalted_rollout_assignment():
    split = _split("10", salt="").experiment
    assert all(
        split.in_treatment(s) == in_share(subject=s, percent=Decimal("10")) for s in SUBJECTS
    )


def test_each_arm_is_decided_and_priced_under_its_own_policy_version():
    policy = _split("50")
    treated = next(s for s in SUBJECTS if policy.experiment.in_treatment(s))
    control = next(s for s in SUBJECTS if not policy.experiment.in_treatment(s))

    def decide_for(subject: str):
        request = RouteRequest(text="hi", prompt_tokens=1000, category="chatbot", subject=subject)
        return route(request=request, policy=policy)

    on_treatment, on_control = decide_for(treated), decide_for(control)
    assert (on_treatment.model.name, on_treatment.policy_version) == ("gpt-5-mini", 2)
    assert (on_treatment.experiment_id, on_treatment.experiment_arm) == (7, "treatment")
    assert (on_control.model.name, on_control.policy_version) == ("gpt-4o-mini", 1)
    assert (on_control.experiment_id, on_control.experiment_arm) == (7, "control")
    # priced with each arm's own prices: 1,000 input and the chatbot's expected output
    out = RULES["chatbot"].expected_output_tokens
    assert (
        on_treatment.estimated_cost_usd
        == (Decimal(1000) * Decimal("0.25") + out * Decimal("2.00")) / 1_000_000
    )
    assert (
        on_control.estimated_cost_usd
        == (Decimal(1000) * Decimal("0.15") + out * Decimal("0.60")) / 1_000_000
    )


def test_without_an_experiment_the_decision_names_none():
    policy = Policy.build(
        version=1, categories=RULES, default_category="chatbot", min_confidence=0.3
    )
    request = RouteRequest(text="hi", prompt_tokens=10, category="chatbot", subject="user:a")
    decision = route(request=request, policy=policy)
    assert (decision.experiment_id, decision.experiment_arm) == (None, "")


# --- services ---------------------------------------------------------------------------

THRESHOLD_DRAFT = {"categories": {"strategy": {"full_from_complexity": 5}}}


@pytest.fixture
def started(policy):
    from routing.experiments import experiment_start

    return experiment_start(name="strategy at 5", actor="ops", draft=THRESHOLD_DRAFT)


@pytest.mark.django_db
def test_starting_from_a_draft_stores_it_as_a_draft_version_and_publishes_the_split(started):
    from routing.models import PolicyVersion, TaskCategory
    from routing.selectors import policy_get

    treatment = started.treatment_version
    assert treatment.draft and treatment.changes == [
        "categories.strategy.full_from_complexity: 7 -> 5"
    ]
    latest = PolicyVersion.objects.filter(draft=False).order_by("-id").first()
    assert latest.snapshot["experiment"]["treatment_version"] == treatment.pk
    assert started.salt == f"experiment-{started.pk}:"
    policy = policy_get()
    assert policy.version == latest.pk and policy.experiment.treatment_percent == Decimal("10")
    assert policy.experiment.treatment.categories["strategy"].full_from == 5
    assert policy.categories["strategy"].full_from == 7
    # the rows (what admin edits) are still the control's
    assert TaskCategory.objects.get(slug="strategy").full_from_complexity == 7


@pytest.mark.django_db
def test_a_second_experiment_is_refused_and_writes_nothing(started):
    from routing.experiments import ExperimentError, experiment_start
    from routing.models import Experiment, PolicyVersion

    versions = PolicyVersion.objects.count()
    with pytest.raises(ExperimentError) as refused:
        experiment_start(name="other", actor="ops", draft={"rollout": {"routed_percent": "50"}})
    assert refused.value.code == "experiment_running"
    assert f"Experiment {started.pk} ('strategy at 5') is running" in refused.value.message
    assert PolicyVersion.objects.count() == versions and Experiment.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("draft", "code"),
    [
        ({"categories": {"strategy": {"mini_model": "no-such-model"}}}, "invalid_treatment"),
        ({"categories": {"strategy": {"full_from_complexity": 7}}}, "same_policy"),
        ({"categories": {"chatbot": {"mini_model": "gpt-5.4-mini"}}}, "invalid_treatment"),
        ({"categories": {"chatbot": {"mini_model": "gpt-4o"}}}, "invalid_treatment"),
    ],
)
def test_a_treatment_that_cannot_route_or_changes_nothing_is_refused(policy, draft, code):
    from routing.experiments import ExperimentError, experiment_start
    from routing.models import Experiment, PolicyVersion

    versions = PolicyVersion.objects.count()
    with pytest.raises(ExperimentError) as refused:
        experiment_start(name="bad", actor="ops", draft=draft)
    assert refused.value.code == code
    assert PolicyVersion.objects.count() == versions and not Experiment.objects.exists()


@pytest.mark.django_db
def test_steps_go_10_50_100_and_back_each_as_a_policy_version(started):
    from routing.experiments import ExperimentError, experiment_back, experiment_step
    from routing.selectors import policy_get

    assert experiment_step(actor="ops").treatment_percent == Decimal("50")
    assert experiment_step(actor="ops").treatment_percent == Decimal("100")
    with pytest.raises(ExperimentError, match="every subject already"):
        experiment_step(actor="ops")
    assert experiment_back(actor="ops", comment="p95 up").treatment_percent == Decimal("50")
    assert policy_get().experiment.treatment_percent == Decimal("50")
    assert [h["move"] for h in started.__class__.objects.get().history] == [
        "start",
        "step",
        "step",
        "back",
    ]
    assert experiment_step(actor="ops", percent=Decimal("25")).treatment_percent == Decimal("25")
    experiment_back(actor="ops")
    with pytest.raises(ExperimentError, match="first step"):
        experiment_back(actor="ops")


@pytest.mark.django_db
def test_finish_publishes_the_treatment_as_one_policy_version(started):
    from routing.experiments import experiment_finish
    from routing.models import PolicyVersion, TaskCategory
    from routing.selectors import policy_get

    before = PolicyVersion.objects.count()
    finished = experiment_finish(actor="ops", comment="quality held")
    assert finished.status == "finished" and finished.ended_by == "ops"
    assert PolicyVersion.objects.count() == before + 1
    latest = PolicyVersion.objects.order_by("-id").first()
    assert not latest.draft and "experiment" not in latest.snapshot
    assert latest.snapshot["categories"]["strategy"]["full_from_complexity"] == 5
    assert TaskCategory.objects.get(slug="strategy").full_from_complexity == 5
    policy = policy_get()
    assert policy.experiment is None and policy.categories["strategy"].full_from == 5


@pytest.mark.django_db
def test_stop_keeps_the_control_for_everyone(started):
    from routing.experiments import experiment_start, experiment_stop
    from routing.models import TaskCategory
    from routing.selectors import policy_get

    assert experiment_stop(actor="ops").status == "stopped"
    assert policy_get().experiment is None
    assert TaskCategory.objects.get(slug="strategy").full_from_complexity == 7
    # and another may start now, against a stored version
    again = experiment_start(name="again", actor="ops", treatment=started.treatment_version)
    assert again.running and again.salt != started.salt


@pytest.mark.django_db
def test_the_rollout_moves_as_an_experiment_and_100_percent_finishes_it(policy):
    from routing.experiments import rollout_set_percentage
    from routing.models import Experiment, RolloutSetting, TaskCategory
    from routing.policy_versions import policy_version_create
    from routing.selectors import policy_get

    rollout_set_percentage(percent=Decimal("10"), actor="ops")
    rollout = Experiment.objects.get()
    assert rollout.is_rollout and rollout.salt == "" and rollout.running
    assert RolloutSetting.objects.get().routed_percent == 0  # the control: routing off
    assert policy_get().experiment.treatment.routed_percent == 100
    # an edit during the rollout reaches the routed users (the treatment) at once
    TaskCategory.objects.filter(slug="code").update(full_from_complexity=6)
    policy_version_create(actor="ops", comment="code at 6")
    assert policy_get().experiment.treatment.categories["code"].full_from == 6
    rollout_set_percentage(percent=Decimal("50"), actor="ops")
    assert Experiment.objects.get().treatment_percent == 50
    rollout_set_percentage(percent=Decimal("100"), actor="ops")
    assert Experiment.objects.get().status == "finished"
    assert RolloutSetting.objects.get().routed_percent == 100
    assert policy_get().experiment is None and policy_get().routed_percent == 100
    assert policy_get().categories["code"].full_from == 6


@pytest.mark.django_db
def test_a_partial_rollout_waits_for_another_running_experiment(started):
    from routing.experiments import ExperimentError, rollout_set_percentage

    with pytest.raises(ExperimentError, match="is running"):
        rollout_set_percentage(percent=Decimal("10"), actor="ops")


@pytest.mark.django_db
def test_feature_flags_follow_the_subjects_arm(policy):
    from routing.experiments import experiment_start
    from routing.gateway.call import route_plan

    experiment = experiment_start(
        name="no streaming",
        actor="ops",
        draft={"flags": {"streaming": {"enabled": False}}},
        percent=Decimal("50"),
    )
    split = users_by_arm(experiment)

    def streaming_for(user: str) -> bool:
        plan = route_plan(messages=[{"role": "user", "content": "hi"}], user=user, api_key_id=1)
        return plan.feature_on("streaming")

    assert streaming_for(split["control"]) and not streaming_for(split["treatment"])


def users_by_arm(experiment) -> dict[str, str]:
    """One end user on each arm, found with the experiment's own salted assignment."""
    found = {}
    for n in range(200):
        subject = f"user:fan-{n}"
        treated = in_share(subject=experiment.salt + subject, percent=experiment.treatment_percent)
        found.setdefault("treatment" if treated else "control", f"fan-{n}")
    return found


@pytest.mark.django_db
def test_an_edit_during_a_draft_experiment_reaches_both_arms_and_finish_keeps_it(started):
    from routing.experiments import experiment_finish
    from routing.models import Experiment, TaskCategory
    from routing.policy_versions import policy_version_create
    from routing.selectors import policy_get

    # given an edit to the published policy while the experiment runs
    TaskCategory.objects.filter(slug="code").update(full_from_complexity=6)
    policy_version_create(actor="ops", comment="code at 6")
    # then the treatment is stored again: the published policy plus its own change
    treatment = Experiment.objects.get().treatment_version
    assert treatment.pk != started.treatment_version_id and treatment.draft
    assert treatment.changes == ["categories.code.full_from_complexity: 7 -> 6"]
    split = policy_get().experiment
    assert split.treatment.categories["code"].full_from == 6
    assert split.treatment.categories["strategy"].full_from == 5
    assert split.control.categories["code"].full_from == 6
    # and finishing publishes both the change tried and the edit
    experiment_finish(actor="ops")
    rows = dict(TaskCategory.objects.values_list("slug", "full_from_complexity"))
    assert (rows["code"], rows["strategy"]) == (6, 5)


@pytest.mark.django_db
def test_a_stored_treatment_version_stays_as_it_was(started):
    from routing.experiments import experiment_start, experiment_stop
    from routing.models import Experiment, TaskCategory
    from routing.policy_versions import policy_version_create

    experiment_stop(actor="ops")
    fixed = experiment_start(name="fixed", actor="ops", treatment=started.treatment_version)
    TaskCategory.objects.filter(slug="code").update(full_from_complexity=6)
    policy_version_create(actor="ops", comment="code at 6")
    assert Experiment.objects.get(pk=fixed.pk).treatment_version_id == fixed.treatment_version_id


@pytest.mark.django_db
def test_a_treatment_that_no_longer_loads_puts_everyone_on_control(started):
    from routing.selectors import policy_cache_clear, policy_get

    treatment = started.treatment_version
    treatment.snapshot["categories"]["strategy"]["mini_model"] = "deleted-model"
    treatment.save(update_fields=["snapshot"])
    policy_cache_clear()
    assert policy_get().experiment is None
    assert policy_get().categories["strategy"].full_from == 7
