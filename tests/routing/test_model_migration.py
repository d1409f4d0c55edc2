"""The migration assistant's services and reads: choosing a successor, the re-priced last
30 days, staging and finishing the switch, qualification results, and the command."""

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from routing.experiments import experiment_start
from routing.model_migration import (
    MigrationError,
    migration_cancel,
    migration_create,
    migration_finish,
    migration_qualify_start,
    migration_stage_set,
)
from routing.model_migration_models import ModelMigration
from routing.model_migration_selectors import (
    migration_repricing,
    qualification_results,
    shutdowns_ahead,
)
from routing.models import Experiment, ModelProfile, PolicyVersion, TaskCategory
from routing.quality import wilson_interval
from routing.selectors import policy_get
from tests.factories import SuccessorVerdictFactory, UsageRecordFactory

pytestmark = pytest.mark.django_db

MOVING = ["chatbot", "marketing"]


def _model(name: str) -> ModelProfile:
    return ModelProfile.objects.get(name=name)


def _migration(categories=None, successor="gpt-5.4-mini", **fields) -> ModelMigration:
    return migration_create(
        old_model=_model("gpt-4o-mini"),
        successor=_model(successor),
        categories=categories,
        actor="ops",
        **fields,
    )


# --- choosing a successor ------------------------------------------------------------------


def test_without_categories_every_enabled_category_on_the_old_model_moves(policy):
    migration = _migration()
    on_mini = sorted(TaskCategory.objects.filter(enabled=True).values_list("slug", flat=True))
    assert migration.categories == on_mini
    assert migration.state == "draft"


def test_choosing_a_successor_changes_nothing_in_routing(policy):
    versions = PolicyVersion.objects.count()
    _migration(MOVING)
    assert PolicyVersion.objects.count() == versions
    assert policy_get().categories["chatbot"].mini.name == "gpt-4o-mini"


@pytest.mark.parametrize(
    ("old", "successor", "categories", "message"),
    [
        ("gpt-4o-mini", "gpt-4o-mini", None, "another model"),
        ("gpt-4o-mini", "gpt-4o", None, "is a full model"),
        ("gpt-4o-mini", "gpt-5.4-mini", ["chatbot", "nonsense"], "Not on gpt-4o-mini"),
        ("gpt-5.4-nano", "gpt-5.4-mini", None, "No enabled category uses"),
    ],
)
def test_a_successor_that_cannot_take_over_is_refused(policy, old, successor, categories, message):
    with pytest.raises(MigrationError, match=message):
        migration_create(
            old_model=_model(old), successor=_model(successor), categories=categories, actor="ops"
        )
    assert not ModelMigration.objects.exists()


def test_one_migration_at_a_time_per_model(policy):
    _migration(MOVING)
    with pytest.raises(MigrationError, match="already has a migration under way"):
        _migration(["legal"], successor="gpt-5.4-nano")


def test_shutdowns_list_days_left_and_the_categories_still_on_each_model(policy):
    # given strategy and legal on the premium tier, and a date 38 days before the shutdown
    today = _model("gpt-4o").shutdown_on - timezone.timedelta(days=38)
    TaskCategory.objects.filter(slug="code").update(enabled=False)
    # when
    rows = {s.model.name: s for s in shutdowns_ahead(today=today)}
    # then both seeded models, 38 days left, with every enabled category on each
    assert set(rows) == {"gpt-4o", "gpt-4o-mini"}
    assert rows["gpt-4o"].days_left == 38
    assert "code" not in rows["gpt-4o-mini"].categories
    assert "legal" in rows["gpt-4o"].categories and "chatbot" in rows["gpt-4o-mini"].categories


# --- re-priced on the successor ------------------------------------------------------------


def test_the_last_30_days_are_repriced_on_the_successor_to_the_cent(policy):
    # given three chatbot calls, a marketing call with 400 cached tokens, a premium strategy
    # call and a chatbot call 31 days ago (outside the window)
    now = timezone.now()
    UsageRecordFactory.create_batch(3, category="chatbot", policy_version=policy)
    UsageRecordFactory(category="marketing", cached_tokens=400, policy_version=policy)
    UsageRecordFactory(
        category="chatbot",
        created_at=now - timezone.timedelta(days=31),
        policy_version=policy,
    )
    UsageRecordFactory(
        category="strategy", complexity=9, tier="full", model="gpt-4o", policy_version=policy
    )
    # when
    report = migration_repricing(
        old_model=_model("gpt-4o-mini"),
        successor=_model("gpt-5.4-mini"),
        categories=MOVING,
        now=now + timezone.timedelta(seconds=1),
    )
    # then, at gpt-5.4-mini's $0.75 / $0.075 cached / $4.50 per 1M tokens:
    rows = {row.category: row for row in report.categories}
    assert set(rows) == set(MOVING)  # strategy does not move
    # chatbot: 3 x (1,000 x 0.75 + 200 x 4.50) / 1M
    assert rows["chatbot"].projected_cost_usd == Decimal("0.00495")
    assert rows["chatbot"].actual_cost_usd == Decimal("0.00081")
    # today's policy (gpt-4o-mini): 3 x (1,000 x 0.15 + 200 x 0.60) / 1M
    assert rows["chatbot"].current_cost_usd == Decimal("0.00081")
    # marketing: (600 x 0.75 + 400 x 0.075 + 200 x 4.50) / 1M
    assert rows["marketing"].projected_cost_usd == Decimal("0.00138")
    assert report.total.projected_cost_usd == Decimal("0.00633")
    assert report.total.requests == 4
    # marketing today: (600 x 0.15 + 400 x 0.075 + 200 x 0.60) / 1M = 0.00024
    assert report.total.change_usd == Decimal("0.00633") - Decimal("0.00081") - Decimal("0.00024")


# --- qualification, stages, finish -------------------------------------------------------------


def test_starting_qualification_publishes_it_in_the_policy(policy):
    migration = _migration(MOVING)
    version = migration_qualify_start(
        migration=migration, sample_percent=Decimal("20"), actor="ops"
    )
    qualification = policy_get().qualifications["gpt-4o-mini"]
    assert qualification.successor == "gpt-5.4-mini"
    assert qualification.sample_percent == Decimal("20")
    assert qualification.categories == frozenset(MOVING)
    assert "qualification of gpt-5.4-mini" in version.comment
    assert any(c.startswith("qualifications.gpt-4o-mini: added") for c in version.changes)


def test_a_zero_sample_cannot_qualify(policy):
    migration = _migration(MOVING, sample_percent=Decimal("0"))
    with pytest.raises(MigrationError, match="above 0%"):
        migration_qualify_start(migration=migration, actor="ops")


def test_a_stage_starts_an_experiment_and_stepping_back_stops_it(policy):
    # given a fallback naming the model being left
    TaskCategory.objects.filter(slug="marketing").update(fallback_models=["gpt-4o-mini"])
    migration = _migration(MOVING)
    # when the switch is staged at 10%
    version = migration_stage_set(migration=migration, percent=Decimal("10"), actor="ops")
    # then an experiment runs whose treatment has the moving categories on the successor
    migration.refresh_from_db()
    experiment = migration.experiment
    assert (experiment.status, experiment.treatment_percent) == ("running", Decimal("10"))
    assert (migration.state, migration.stage_percent) == ("staged", Decimal("10"))
    treated = experiment.treatment_version.snapshot
    assert all(treated["categories"][s]["mini_model"] == "gpt-5.4-mini" for s in MOVING)
    assert treated["categories"]["code"]["mini_model"] == "gpt-4o-mini"  # not moving
    assert treated["categories"]["marketing"]["fallback_models"] == ["gpt-5.4-mini"]
    assert treated["models"]["gpt-5.4-mini"]["active"]
    assert version == PolicyVersion.objects.filter(draft=False).order_by("-id").first()
    assert f"experiment {experiment.pk} started" in version.comment
    # and the published policy (the control) is unchanged, still qualifying the successor
    assert all(policy_get().categories[s].mini.name == "gpt-4o-mini" for s in MOVING)
    assert "gpt-4o-mini" in policy_get().qualifications
    # when it steps to 50 and 100, then back to 50: the same experiment moves
    for percent in ("50", "100", "50"):
        version = migration_stage_set(migration=migration, percent=Decimal(percent), actor="ops")
        experiment.refresh_from_db()
        assert experiment.treatment_percent == Decimal(percent)
    assert "100% -> 50%" in version.comment
    assert [h["move"] for h in experiment.history] == ["start", "step", "step", "back"]
    # when it steps back to 0%, then the experiment stops: everyone on the old model
    migration_stage_set(migration=migration, percent=Decimal("0"), actor="ops")
    experiment.refresh_from_db()
    assert experiment.status == "stopped"
    assert all(policy_get().categories[s].mini.name == "gpt-4o-mini" for s in MOVING)
    assert TaskCategory.objects.get(slug="marketing").fallback_models == ["gpt-4o-mini"]
    assert policy_get().experiment is None
    # and staging again starts a new experiment
    migration_stage_set(migration=migration, percent=Decimal("10"), actor="ops")
    migration.refresh_from_db()
    assert migration.experiment.pk != experiment.pk


def test_staging_while_another_experiment_runs_is_refused_and_writes_nothing(policy):
    other = experiment_start(
        name="x", actor="ops", draft={"categories": {"code": {"full_from_complexity": 5}}}
    )
    migration = _migration(MOVING)
    versions = PolicyVersion.objects.count()
    with pytest.raises(MigrationError, match=f"Experiment {other.pk} \\('x'\\) is running"):
        migration_stage_set(migration=migration, percent=Decimal("10"), actor="ops")
    migration.refresh_from_db()
    assert (migration.state, migration.stage_percent, migration.experiment) == (
        "draft",
        Decimal("0"),
        None,
    )
    assert PolicyVersion.objects.count() == versions
    assert Experiment.objects.get().pk == other.pk
    with pytest.raises(CommandError, match="is running"):
        _command("stage", "gpt-4o-mini", "10")


def test_finishing_a_staged_switch_finishes_its_experiment_in_one_version(policy):
    migration = _migration(MOVING)
    migration_qualify_start(migration=migration, actor="ops")
    migration_stage_set(migration=migration, percent=Decimal("50"), actor="ops")
    before = PolicyVersion.objects.count()
    version = migration_finish(migration=migration, actor="ops", comment="moving on")
    assert PolicyVersion.objects.count() == before + 1
    migration.refresh_from_db()
    assert (migration.state, migration.switched_version) == ("switched", version)
    assert migration.experiment.status == "finished"
    assert "moving on" in version.comment
    published = policy_get()
    assert published.experiment is None
    assert all(published.categories[s].mini.name == "gpt-5.4-mini" for s in MOVING)
    assert published.categories["code"].mini.name == "gpt-4o-mini"
    assert "gpt-4o-mini" not in published.qualifications
    assert _model("gpt-5.4-mini").active


def test_finishing_moves_every_category_in_one_policy_version(policy):
    # given a qualifying migration of the whole cheap tier
    migration = _migration()
    migration_qualify_start(migration=migration, actor="ops")
    before = PolicyVersion.objects.count()
    # when
    version = migration_finish(migration=migration, actor="ops", comment="gpt-4o-mini retires")
    # then one version moves them all and ends the qualification
    assert PolicyVersion.objects.count() == before + 1
    moved = [c for c in version.changes if c.endswith("'gpt-4o-mini' -> 'gpt-5.4-mini'")]
    assert len(moved) == len(migration.categories)
    assert "gpt-4o-mini" not in policy_get().qualifications
    assert all(r.mini.name == "gpt-5.4-mini" for r in policy_get().categories.values())
    migration.refresh_from_db()
    assert (migration.state, migration.switched_version) == ("switched", version)
    assert version.actor == "ops" and version.comment == "gpt-4o-mini retires"
    with pytest.raises(MigrationError, match="switched"):
        migration_stage_set(migration=migration, percent=Decimal("10"), actor="ops")


def test_cancelling_stops_the_experiment(policy):
    migration = _migration(MOVING)
    migration_stage_set(migration=migration, percent=Decimal("100"), actor="ops")
    before = PolicyVersion.objects.count()
    version = migration_cancel(migration=migration, actor="ops")
    assert PolicyVersion.objects.count() == before + 1
    assert "cancelled" in version.comment
    migration.refresh_from_db()
    assert (migration.state, migration.experiment.status) == ("cancelled", "stopped")
    assert all(policy_get().categories[s].mini.name == "gpt-4o-mini" for s in MOVING)
    assert policy_get().experiment is None
    assert _migration(MOVING).state == "draft"  # a new one may start


def test_qualification_results_give_retained_with_its_wilson_interval(policy, settings):
    # given 10 chatbot verdicts (6 ties, 2 successor better, 2 today's better), 3 marketing
    settings.QUALITY_MIN_SAMPLES = 5
    migration = _migration(MOVING)
    verdicts = ["tie"] * 6 + ["cheap_better"] * 2 + ["premium_better"] * 2
    for verdict in verdicts:
        SuccessorVerdictFactory(migration=migration, category="chatbot", verdict=verdict)
    SuccessorVerdictFactory.create_batch(3, migration=migration, category="marketing")
    # when
    results = qualification_results(migration=migration)
    # then
    chatbot, marketing = results.categories
    assert (chatbot.retained.good, chatbot.retained.n) == (8, 10)
    assert chatbot.retained.percent == Decimal("80.0")
    low, high = wilson_interval(good=8, n=10)
    assert chatbot.retained.interval == (
        (Decimal(repr(low)) * 100).quantize(Decimal("0.1")),
        (Decimal(repr(high)) * 100).quantize(Decimal("0.1")),
    )
    assert chatbot.retained.below_floor  # 80% under the 95% floor, with 10 >= 5 verdicts
    assert not marketing.retained.enough
    assert results.status == "below floor"
    assert (results.overall.good, results.overall.n) == (11, 13)


# --- manage.py migrate_model -----------------------------------------------------------------


def _command(*args: str) -> str:
    out = StringIO()
    call_command("migrate_model", *args, stdout=out)
    return out.getvalue()


def test_the_command_takes_the_same_steps(policy):
    UsageRecordFactory(category="marketing", policy_version=policy)
    out = _command("choose", "gpt-4o-mini", "gpt-5.4-mini", "--categories", "chatbot,marketing")
    assert "successor chosen: gpt-5.4-mini" in out and "marketing" in out
    assert "qualification of gpt-5.4-mini" in _command("qualify", "gpt-4o-mini", "--sample", "10")
    assert "started" in _command("stage", "gpt-4o-mini", "50")  # an experiment on 50%
    assert "50% -> 100% (experiment" in _command("stage", "gpt-4o-mini", "100")
    status = _command("status")
    assert "gpt-4o-mini -> gpt-5.4-mini: staged, staged 100%" in status
    assert "days left" in status
    assert "switched chatbot, marketing" in _command("finish", "gpt-4o-mini")
    assert policy_get().categories["chatbot"].mini.name == "gpt-5.4-mini"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("choose", "gpt-4o-mini", "gpt-9"), "No model named 'gpt-9'"),
        (("choose", "gpt-4o-mini", "gpt-4o"), "is a full model"),
        (("qualify", "gpt-4o"), "no migration under way"),
        (("choose", "gpt-4o-mini", "gpt-5.4-mini", "--sample", "lots"), "Not a percentage"),
    ],
)
def test_the_command_says_what_is_wrong(policy, args, message):
    with pytest.raises(CommandError, match=message):
        _command(*args)


def test_the_command_refuses_a_stage_outside_0_100(policy):
    _command("choose", "gpt-4o-mini", "gpt-5.4-mini")
    with pytest.raises(CommandError, match="outside 0-100"):
        _command("stage", "gpt-4o-mini", "150")
