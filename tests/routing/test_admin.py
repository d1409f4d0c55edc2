"""Admin as the team meets it: a staff user through Django's test client."""

import pytest
from django.contrib.auth import get_user_model

from routing.models import ApiKey, PolicyVersion, TaskCategory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw-for-tests")
    client.force_login(user)
    return client


def _category_form(category: TaskCategory, **changes) -> dict:
    data = {
        "slug": category.slug,
        "name": category.name,
        "description": category.description,
        "full_from_complexity": category.full_from_complexity or "",
        "mini_model": category.mini_model_id,
        "full_model": category.full_model_id,
        "system_prompt": category.system_prompt,
        "max_output_tokens": category.max_output_tokens,
        "expected_output_tokens": category.expected_output_tokens,
        "classifier_keywords": "{}",
        "critical_triggers": "[]",
        "response_cache_ttl_s": category.response_cache_ttl_s,
        "enabled": "on",
    }
    if category.always_full:
        data["always_full"] = "on"
    data.update(changes)
    return data


def test_changing_a_threshold_creates_a_policy_version_and_changes_the_next_decision(
    staff_client, policy, api_client
):
    # given strategy goes full from 7
    strategy = TaskCategory.objects.get(slug="strategy")
    body = {"messages": [{"role": "user", "content": "plan"}], "category": "strategy"}
    before = api_client.post("/api/v1/route", {**body, "complexity": 5}, format="json").json()
    assert before["tier"] == "mini"
    # when the team lowers the threshold to 4
    url = f"/admin/routing/taskcategory/{strategy.pk}/change/"
    response = staff_client.post(url, _category_form(strategy, full_from_complexity=4))
    # then
    assert response.status_code == 302
    version = PolicyVersion.objects.first()
    assert version.pk != policy.pk
    assert version.actor == "ops"
    assert any("strategy.full_from_complexity: 7 -> 4" in c for c in version.changes)
    after = api_client.post("/api/v1/route", {**body, "complexity": 5}, format="json").json()
    assert after["tier"] == "full"
    assert after["policy_version"] == version.pk


def test_threshold_above_10_is_a_form_error(staff_client, policy):
    strategy = TaskCategory.objects.get(slug="strategy")
    url = f"/admin/routing/taskcategory/{strategy.pk}/change/"
    response = staff_client.post(url, _category_form(strategy, full_from_complexity=11))
    assert response.status_code == 200
    assert "less than or equal to 10" in response.content.decode()
    assert PolicyVersion.objects.count() == 1


def test_mini_slot_refuses_a_premium_model(staff_client, policy):
    strategy = TaskCategory.objects.get(slug="strategy")
    url = f"/admin/routing/taskcategory/{strategy.pk}/change/"
    form = _category_form(strategy, mini_model=strategy.full_model_id)
    response = staff_client.post(url, form)
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()


def test_category_list_warns_about_models_near_shutdown(staff_client, policy):
    response = staff_client.get("/admin/routing/taskcategory/")
    page = response.content.decode()
    assert response.status_code == 200
    assert "shuts down on 2027-01-14" in page  # gpt-4o family, within 60 days of 2026-11-24


def test_no_shutdown_warning_when_far_away(staff_client, policy, settings):
    settings.ROUTER_SHUTDOWN_WARNING_DAYS = 0
    page = staff_client.get("/admin/routing/taskcategory/").content.decode()
    assert "shuts down on" not in page


def test_creating_an_api_key_in_admin_shows_it_once(staff_client, db):
    response = staff_client.post("/admin/routing/apikey/add/", {"name": "mobile-app"}, follow=True)
    page = response.content.decode()
    key = ApiKey.objects.get(name="mobile-app")
    assert "shown once" in page
    assert key.prefix in page
    assert key.key_hash not in page


def test_ledger_admin_is_read_only(staff_client, policy, api_client):
    api_client.post(
        "/api/v1/completions", {"messages": [{"role": "user", "content": "hi"}]}, format="json"
    )
    assert staff_client.get("/admin/usage/usagerecord/").status_code == 200
    assert staff_client.get("/admin/usage/usagerecord/add/").status_code == 403


def test_anonymous_user_is_sent_to_login(client, policy):
    response = client.get("/admin/routing/taskcategory/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
