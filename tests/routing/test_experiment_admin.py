"""Experiments in admin (test client and headless chromium), the rollout page as the first
experiment, and the data migration that made the running rollout an experiment."""

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from routing.experiments import experiment_start, rollout_set_percentage
from routing.models import Experiment, PolicyVersion
from tests.factories import ApiKeyFactory, UsageRecordFactory

DRAFT = '{"categories": {"strategy": {"full_from_complexity": 5}}}'


@pytest.fixture
def staff_client(client):
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw-for-tests")
    client.force_login(user)
    return client


def _start(client, **fields):
    data = {"name": "strategy at 5", "draft": DRAFT, "percent": "10", **fields}
    return client.post(reverse("admin:routing_experiment_start"), data)


@pytest.mark.django_db
def test_starting_from_admin_opens_the_experiment_page(staff_client, policy):
    # when
    response = _start(staff_client)
    # then
    experiment = Experiment.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:routing_experiment_change", args=[experiment.pk])
    page = staff_client.get(response["Location"])
    assert b"categories.strategy.full_from_complexity: 7 -&gt; 5" in page.content
    assert b'id="experiment-percent">10%' in page.content
    listing = staff_client.get(reverse("admin:routing_experiment_changelist"))
    assert b"strategy at 5" in listing.content and b"Start an experiment" in listing.content


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"draft": "{oops"}, b"Not valid JSON"),
        ({"draft": ""}, b"Give either a treatment version or a draft"),
        ({"percent": "0"}, b"Ensure this value is greater than or equal to 0.01"),
        ({"draft": '{"categories": {"strategy": {"mini_model": "nope"}}}'}, b"does not fit"),
    ],
)
def test_a_bad_start_is_a_400_form_that_starts_nothing(staff_client, policy, fields, message):
    versions = PolicyVersion.objects.count()
    response = _start(staff_client, **fields)
    assert response.status_code == 400 and message in response.content
    assert not Experiment.objects.exists() and PolicyVersion.objects.count() == versions


@pytest.mark.django_db
def test_a_second_experiment_is_refused_with_the_running_ones_name(staff_client, policy):
    _start(staff_client)
    response = _start(staff_client, name="another", draft='{"rollout": {"routed_percent": "50"}}')
    assert response.status_code == 400
    running = Experiment.objects.get()
    assert f"Experiment {running.pk} (&#x27;strategy at 5&#x27;) is running".encode() in (
        response.content
    )
    assert Experiment.objects.count() == 1


@pytest.mark.django_db
def test_move_buttons_step_back_and_finish(staff_client, policy):
    experiment = experiment_start(
        name="x", actor="ops", draft={"rollout": {"routed_percent": "50"}}
    )
    move = reverse("admin:routing_experiment_move", args=[experiment.pk])
    staff_client.post(move, {"move": "step"})
    assert Experiment.objects.get().treatment_percent == 50
    staff_client.post(move, {"move": "back"})
    response = staff_client.post(move, {"move": "back"}, follow=True)
    assert b"stop the experiment to end it" in response.content
    staff_client.post(move, {"move": "finish", "comment": "fine"})
    assert Experiment.objects.get().status == "finished"
    response = staff_client.post(move, {"move": "stop"}, follow=True)
    assert f"Experiment {experiment.pk} is finished".encode() in response.content


@pytest.mark.django_db
def test_the_rollout_page_drives_the_rollout_experiment(staff_client, policy):
    # given a 10% rollout (an experiment)
    rollout_set_percentage(percent=Decimal("10"), actor="ops")
    rollout = Experiment.objects.get()
    # when the page is shown, then it says so
    page = staff_client.get(reverse("admin:routing_rolloutsetting_changelist"))
    assert b'id="rollout-percent">10%' in page.content
    link = reverse("admin:routing_experiment_change", args=[rollout.pk])
    assert f'This rollout runs as\n    <a href="{link}"'.encode() in page.content
    # and its confirm step moves the experiment
    staff_client.post(reverse("admin:routing_rollout_move"), {"to": "50", "confirm": "yes"})
    assert Experiment.objects.get().treatment_percent == 50


@pytest.mark.django_db
def test_a_partial_rollout_during_another_experiment_is_an_admin_error(staff_client, policy):
    experiment_start(
        name="x", actor="ops", draft={"categories": {"code": {"full_from_complexity": 5}}}
    )
    response = staff_client.post(
        reverse("admin:routing_rollout_move"), {"to": "50", "confirm": "yes"}, follow=True
    )
    assert b"finish or stop it before a partial rollout" in response.content
    assert Experiment.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_experiment_page_in_a_browser_shows_the_arms_and_steps(staff_browser, live_server, policy):
    from selenium.webdriver.common.by import By

    from tests.waits import element_after_click

    # given a running experiment with traffic on both arms
    experiment = experiment_start(
        name="successor", actor="ops", draft={"categories": {"code": {"full_from_complexity": 5}}}
    )
    common = {"experiment": experiment, "api_key": ApiKeyFactory(), "policy_version": policy}
    UsageRecordFactory.create_batch(3, experiment_arm="control", latency_ms=300, **common)
    UsageRecordFactory.create_batch(
        2, experiment_arm="treatment", cost_usd=Decimal("0.0009"), latency_ms=700, **common
    )
    # when
    staff_browser.get(f"{live_server.url}/admin/routing/experiment/{experiment.pk}/change/")
    # then each arm's figures are the ledger's
    cells = {
        row.get_attribute("class"): {
            td.get_attribute("data-figure"): td.text
            for td in row.find_elements(By.CSS_SELECTOR, "td[data-figure]")
        }
        for row in staff_browser.find_elements(By.CSS_SELECTOR, "#arms tbody tr")
    }
    assert cells["arm-control"]["requests"] == "3"
    assert cells["arm-treatment"]["cost_per_1k_usd"] == "$0.9000"
    assert cells["arm-treatment"]["p50_latency_ms"] == "700 ms"
    assert cells["arm-treatment"]["savings"] == "$0.0072 (80.0%)"
    assert "costs 233.3% per 1,000" in staff_browser.find_element(By.ID, "cost-change").text
    # and stepping takes the treatment to 50%
    staff_browser.find_element(By.ID, "move-step").click()
    message = element_after_click(staff_browser, By.CSS_SELECTOR, ".messagelist")
    assert "treatment on 50%" in message.text
    assert staff_browser.find_element(By.ID, "experiment-percent").text == "50%"
    assert Experiment.objects.get().treatment_percent == 50


@pytest.mark.django_db(transaction=True)
def test_the_migration_makes_a_running_rollout_the_first_experiment_keeping_each_users_arm(
    policy,
):
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    from routing.models import RolloutSetting
    from routing.policy_versions import policy_version_create
    from routing.rollout import in_share
    from routing.selectors import policy_cache_clear, policy_get

    def migrate(target: str) -> None:
        executor = MigrationExecutor(connection)
        executor.migrate([("routing", target)])

    # given a database before experiments, launched to 10% the old way
    migrate("0017_experiments")
    RolloutSetting.objects.filter(pk=1).update(routed_percent=Decimal("10"))
    old = policy_version_create(actor="ops", comment="rollout 100% -> 10%")
    # when it migrates
    migrate("0018_rollout_as_experiment")
    # then the rollout is experiment 1, unsalted, with the control routing nobody
    rollout = Experiment.objects.get()
    assert (rollout.is_rollout, rollout.salt, rollout.treatment_percent) == (True, "", 10)
    assert rollout.control_version == old and rollout.treatment_version.draft
    assert RolloutSetting.objects.get().routed_percent == 0
    policy_cache_clear()
    policy = policy_get()
    subjects = [f"user:fan-{n}" for n in range(2000)]
    for subject in subjects:
        arm = policy.for_subject(subject).arm_for(subject=subject, api_key_id=1)
        assert (arm == "routed") == in_share(subject=subject, percent=Decimal("10"))
    # and going back restores the setting
    migrate("0017_experiments")
    assert RolloutSetting.objects.get().routed_percent == 10
    assert Experiment.objects.get().status == "stopped"
    migrate("0018_rollout_as_experiment")
    # and the schema is left at the latest migration for the tests after this one
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    policy_cache_clear()
