"""The Model migrations page as the team meets it: a staff user through the test client,
and the whole page in headless chromium."""

import os
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from routing.experiments import experiment_start
from routing.model_migration import migration_create, migration_qualify_start
from routing.model_migration_models import ModelMigration
from routing.models import ModelProfile, PolicyVersion
from tests.factories import SuccessorVerdictFactory, UsageRecordFactory
from tests.waits import click_and_load
from usage.models import UsageRecord

PAGE = "/admin/routing/modelmigration/"
SCREENSHOTS = os.environ.get("SCREENSHOT_DIR")


@pytest.fixture
def staff_client(client, db):
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw-for-tests")
    client.force_login(user)
    return client


def _model(name: str) -> ModelProfile:
    return ModelProfile.objects.get(name=name)


def _draft(categories=("chatbot", "marketing")) -> ModelMigration:
    return migration_create(
        old_model=_model("gpt-4o-mini"),
        successor=_model("gpt-5.4-mini"),
        categories=list(categories),
        actor="ops",
    )


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


@pytest.mark.django_db
def test_the_page_shows_days_left_and_the_categories_still_on_each_model(staff_client, policy):
    page = staff_client.get(PAGE)
    assert page.status_code == 200
    rows = {s.model.name: s for s in page.context["shutdowns"]}
    assert rows["gpt-4o"].days_left == (rows["gpt-4o"].model.shutdown_on - _today()).days
    html = page.content.decode()
    assert 'id="shutdown-gpt-4o-mini"' in html and "none chosen" in html
    assert 'id="choose-gpt-4o-mini"' in html and "gpt-5.4-mini (inactive)" in html


def _today():
    from django.utils import timezone

    return timezone.now().date()


@pytest.mark.django_db
def test_choosing_a_successor_makes_a_draft_and_shows_the_repriced_cost(staff_client, policy):
    # given 2 chatbot calls of 1,000 in and 200 out tokens
    UsageRecordFactory.create_batch(2, category="chatbot", policy_version=policy)
    # when
    response = staff_client.post(
        f"{PAGE}create/",
        {
            "old_model": _model("gpt-4o-mini").pk,
            "successor": _model("gpt-5.4-mini").pk,
            "categories": ["chatbot", "marketing"],
            "sample_percent": "10",
        },
        follow=True,
    )
    # then
    migration = ModelMigration.objects.get()
    assert (migration.categories, migration.sample_percent) == (["chatbot", "marketing"], 10)
    assert "Nothing has changed in routing yet" in _messages(response)[0]
    html = response.content.decode()
    # 2 x (1,000 x $0.75 + 200 x $4.50) / 1M = $0.0033 on the successor; billed 2 x $0.00027
    assert 'data-figure="successor">$0.0033<' in html
    assert 'data-figure="billed">$0.0005<' in html
    assert "Start qualification" in html


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"successor": "gpt-4o"}, "is a full model"),
        ({"successor": None}, "Choose the model to replace and its successor"),
        ({"sample_percent": "lots"}, "Not a percentage"),
        ({"sample_percent": "120"}, "outside 0-100"),
        ({"categories": ["chatbot", "nonsense"]}, "Not on gpt-4o-mini"),
    ],
)
def test_a_bad_choice_is_an_error_and_creates_nothing(staff_client, policy, form, message):
    data = {
        "old_model": _model("gpt-4o-mini").pk,
        "successor": _model("gpt-5.4-mini").pk,
        "sample_percent": "5",
    }
    form = dict(form)
    if "successor" in form:
        name = form.pop("successor")
        data["successor"] = _model(name).pk if name else ""
    data.update(form)
    response = staff_client.post(f"{PAGE}create/", data, follow=True)
    assert any(message in m for m in _messages(response))
    assert not ModelMigration.objects.exists()


@pytest.mark.django_db
def test_the_steps_qualify_stage_and_finish_each_make_a_version(staff_client, policy):
    migration = _draft()
    versions = PolicyVersion.objects.count()
    step = f"{PAGE}{migration.pk}"
    staff_client.post(f"{step}/qualify/", {"sample_percent": "20"})
    staged = staff_client.post(f"{step}/stage/", {"percent": "50"}, follow=True)
    migration.refresh_from_db()
    experiment = migration.experiment
    assert f"experiment {experiment.pk} started" in _messages(staged)[-1].lower()
    # the page shows the experiment's share and links to it
    page = staged.content.decode()
    assert f'href="/admin/routing/experiment/{experiment.pk}/change/"' in page
    assert '<strong data-figure="experiment_percent">50%</strong>' in page
    refused = staff_client.post(f"{step}/finish/", {}, follow=True)
    assert "Tick the confirmation" in _messages(refused)[-1]
    done = staff_client.post(
        f"{step}/finish/", {"confirm": "yes", "comment": "retire"}, follow=True
    )
    assert "Switch finished" in _messages(done)[-1] and "retire" in _messages(done)[-1]
    migration.refresh_from_db()
    assert (migration.state, migration.sample_percent) == ("switched", 20)
    assert migration.experiment.status == "finished"
    # published: qualify, experiment start, finish (the treatment is a draft version beside)
    assert PolicyVersion.objects.filter(draft=False).count() == versions + 3
    assert PolicyVersion.objects.first().actor == "ops"
    assert "Start qualification" not in done.content.decode()  # nothing more to do


@pytest.mark.django_db
def test_staging_while_another_experiment_runs_is_an_error_message(staff_client, policy):
    other = experiment_start(
        name="x", actor="ops", draft={"categories": {"code": {"full_from_complexity": 5}}}
    )
    migration = _draft()
    versions = PolicyVersion.objects.count()
    response = staff_client.post(f"{PAGE}{migration.pk}/stage/", {"percent": "10"}, follow=True)
    assert f"Experiment {other.pk} ('x') is running" in _messages(response)[-1]
    migration.refresh_from_db()
    assert (migration.state, migration.stage_percent, migration.experiment) == (
        "draft",
        0,
        None,
    )
    assert PolicyVersion.objects.count() == versions


@pytest.mark.django_db
def test_the_page_shows_retained_per_category_and_qa_spend_apart(staff_client, policy, settings):
    # given 4 chatbot verdicts (3 retained) and two QA rows of the qualification
    settings.QUALITY_MIN_SAMPLES = 2
    migration = _draft()
    migration_qualify_start(migration=migration, actor="ops")
    for i, verdict in enumerate(["tie", "tie", "cheap_better", "premium_better"]):
        SuccessorVerdictFactory(migration=migration, request_id=f"r{i}", verdict=verdict)
    UsageRecordFactory.create_batch(
        2,
        qa=True,
        cost_usd=Decimal("0.00125"),
        metadata={"qualification": migration.pk},
        policy_version=policy,
    )
    # when
    html = staff_client.get(PAGE).content.decode()
    # then 75% retained (below the 95% floor), and $0.0025 of QA spend apart
    assert 'data-figure="retained">75.0% &#9888;' in html
    assert "30.1–95.4%" in html  # Wilson 95% for 3 of 4
    assert 'data-figure="qa_cost">$0.0025<' in html
    assert 'data-figure="qualification_status">below floor<' in html
    assert UsageRecord.objects.filter(qa=False).count() == 0


@pytest.mark.django_db
def test_steps_need_a_post_with_csrf(policy):
    migration = _draft()
    user = get_user_model().objects.create_superuser("csrf", "c@example.com", "pw-for-tests")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post(f"{PAGE}{migration.pk}/stage/", {"percent": "100"}).status_code == 403
    client.get(f"{PAGE}{migration.pk}/stage/?percent=100")
    migration.refresh_from_db()
    assert migration.stage_percent == 0


@pytest.mark.django_db
def test_users_without_the_permission_change_nothing(client, policy):
    migration = _draft()
    user = get_user_model().objects.create_user("viewer", "v@example.com", "pw", is_staff=True)
    client.force_login(user)
    client.post(f"{PAGE}{migration.pk}/finish/", {"confirm": "yes"})
    migration.refresh_from_db()
    assert migration.state == "draft"


# --- the page in a browser -------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_migration_page_in_a_browser(staff_browser, live_server, policy):
    # given a day of chatbot traffic
    UsageRecordFactory.create_batch(3, category="chatbot", policy_version=policy)
    browser = staff_browser
    browser.get(f"{live_server.url}{PAGE}")
    days_left = browser.find_element("css selector", "#shutdown-gpt-4o-mini .days-left")
    assert int(days_left.text) == (_model("gpt-4o-mini").shutdown_on - _today()).days
    # when the team chooses gpt-5.4-mini for chatbot and marketing only
    form = browser.find_element("id", "choose-gpt-4o-mini")
    for box in form.find_elements("css selector", "input[name=categories]"):
        if box.get_attribute("value") not in ("chatbot", "marketing"):
            box.click()
    click_and_load(browser, form.find_element("css selector", "input[type=submit]"))
    # then the re-priced cost is on the page: 3 x $0.00165 on the successor
    migration = ModelMigration.objects.get()
    section = browser.find_element("id", f"migration-{migration.pk}")
    total = section.find_element("css selector", ".reprice-total [data-figure=successor]")
    assert total.text == "$0.0050"  # $0.00495, shown to 4 places
    # when qualification starts, the switch is staged, then finished
    _step(browser, migration, ".qualify-form input[type=submit]")
    assert (
        "qualifying"
        in _section(browser, migration).find_element("css selector", ".migration-state").text
    )
    _step(browser, migration, ".stage-form input[value='Stage switch to 10%']")
    assert "started" in _message(browser) and "on 10%" in _message(browser)
    section = _section(browser, migration)
    assert "treatment on 10% of users" in section.text
    assert section.find_element("css selector", "a.migration-experiment")
    section.find_element("css selector", ".finish-form input[name=confirm]").click()
    _step(browser, migration, ".finish-form input[type=submit]")
    # then
    if SCREENSHOTS:
        browser.save_screenshot(os.path.join(SCREENSHOTS, "migration.png"))
    assert "Switch finished" in _message(browser)
    assert "(switched)" in _section(browser, migration).text
    assert _model("gpt-5.4-mini").active


def _section(browser, migration):
    return browser.find_element("id", f"migration-{migration.pk}")


def _step(browser, migration, selector: str) -> None:
    click_and_load(browser, _section(browser, migration).find_element("css selector", selector))


def _message(browser) -> str:
    return browser.find_element("css selector", ".messagelist").text
