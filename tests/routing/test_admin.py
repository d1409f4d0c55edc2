"""Admin as the team meets it: a staff user through Django's test client."""

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from routing.models import ApiKey, FeatureFlag, PolicyVersion, RolloutSetting, TaskCategory

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
        "deadline_s": category.deadline_s,
        "fallback_models": "[]",
        "shadow_sample_percent": category.shadow_sample_percent,
        "quality_floor_percent": category.quality_floor_percent,
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


def test_fallback_chain_refuses_an_unknown_model(staff_client, policy):
    strategy = TaskCategory.objects.get(slug="strategy")
    url = f"/admin/routing/taskcategory/{strategy.pk}/change/"
    form = _category_form(strategy, fallback_models='["gpt-4o", "gpt-typo"]')
    response = staff_client.post(url, form)
    assert response.status_code == 200
    assert "Not an active model: gpt-typo." in response.content.decode()
    assert TaskCategory.objects.get(slug="strategy").fallback_models == []


def test_category_list_warns_about_models_near_shutdown(staff_client, policy):
    response = staff_client.get("/admin/routing/taskcategory/")
    page = response.content.decode()
    assert response.status_code == 200
    assert "shuts down on 2027-01-14" in page  # gpt-4o family, within 60 days of 2026-11-24


def _warnings(page: str) -> list[str]:
    import re

    return re.findall(r'<li class="warning">(.*?)</li>', page, re.DOTALL)


def test_one_shutdown_banner_names_every_model_and_an_inline_save_does_not_repeat_it(
    staff_client, policy
):
    # given two models of the seeded policy near their shutdown (gpt-4o and gpt-4o-mini)
    flags = list(FeatureFlag.objects.order_by("name"))
    # when a routing page is viewed, and when its list is saved inline
    viewed = staff_client.get("/admin/routing/featureflag/").content.decode()
    form = {"form-TOTAL_FORMS": len(flags), "form-INITIAL_FORMS": len(flags), "_save": "Save"}
    for n, flag in enumerate(flags):
        form[f"form-{n}-id"] = flag.pk
        if flag.enabled:
            form[f"form-{n}-enabled"] = "on"
    saved = staff_client.post("/admin/routing/featureflag/", form, follow=True)
    # then each shows one banner naming both models
    for page in (viewed, saved.content.decode()):
        (banner,) = [w for w in _warnings(page) if "shuts down" in w]
        assert "gpt-4o shuts down on 2027-01-14" in banner
        assert "gpt-4o-mini shuts down on 2027-01-14" in banner
    assert saved.redirect_chain  # the save went through and came back to the list


def test_no_shutdown_warning_when_far_away(staff_client, policy, settings):
    settings.ROUTER_SHUTDOWN_WARNING_DAYS = 0
    page = staff_client.get("/admin/routing/taskcategory/").content.decode()
    assert "shuts down on" not in page


def test_creating_an_api_key_in_admin_shows_it_once(staff_client, db):
    form = {"name": "mobile-app", "monthly_budget_usd": "250", "budget_alert_percent": "80"}
    response = staff_client.post("/admin/routing/apikey/add/", form, follow=True)
    page = response.content.decode()
    key = ApiKey.objects.get(name="mobile-app")
    assert "shown once" in page
    assert key.prefix in page
    assert key.key_hash not in page
    assert key.monthly_budget_usd == 250


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


# --- the control plane: matrix, validation, history, rollout, flags, what-if -------------


def _complete(api_client, **body):
    payload = {"messages": [{"role": "user", "content": "plan my week"}], **body}
    return api_client.post("/api/v1/completions", payload, format="json").json()


def test_category_list_shows_the_matrix_with_traffic_shares(staff_client, policy, api_client):
    for _ in range(3):
        _complete(api_client, category="chatbot")
    _complete(api_client, category="strategy")
    page = staff_client.get("/admin/routing/taskcategory/").content.decode()
    assert "75.0%" in page and "25.0%" in page  # chatbot and strategy of last 30 days
    assert page.count('class="matrix-cell matrix-full"') >= 2 * 11 + 3 * 4  # legal, compliance
    assert "≥ 7" in page and "always" in page


def test_the_default_category_cannot_be_disabled_without_another(staff_client, policy):
    chatbot = TaskCategory.objects.get(slug="chatbot")
    form = _category_form(chatbot, is_default="on")
    del form["enabled"]
    response = staff_client.post(f"/admin/routing/taskcategory/{chatbot.pk}/change/", form)
    assert response.status_code == 200
    assert "At least one enabled category must be the default" in response.content.decode()


def test_change_comment_is_kept_in_the_version(staff_client, policy):
    strategy = TaskCategory.objects.get(slug="strategy")
    form = _category_form(strategy, full_from_complexity=6, change_comment="Q4 test")
    staff_client.post(f"/admin/routing/taskcategory/{strategy.pk}/change/", form)
    assert PolicyVersion.objects.first().comment == "Q4 test"


def test_whatif_replays_the_unsaved_draft_and_saves_nothing(staff_client, policy, api_client):
    # given strategy traffic at complexity 5 (mini under the threshold of 7)
    for _ in range(4):
        _complete(api_client, category="strategy", complexity=5)
    strategy = TaskCategory.objects.get(slug="strategy")
    url = f"/admin/routing/taskcategory/{strategy.pk}/change/"
    # when the team tries a threshold of 4 without saving
    form = _category_form(strategy, full_from_complexity=4, _whatif="1", _whatif_days=7)
    page = staff_client.post(url, form).content.decode()
    # then the page projects every request on the premium tier, and nothing changed
    assert 'id="whatif-result"' in page
    assert "100.0%" in page and "0.0%" in page  # cheap share actual vs projected
    assert PolicyVersion.objects.count() == 1
    assert TaskCategory.objects.get(slug="strategy").full_from_complexity == 7


def test_restoring_a_version_brings_the_rules_back(staff_client, policy):
    strategy = TaskCategory.objects.get(slug="strategy")
    url = f"/admin/routing/taskcategory/{strategy.pk}/change/"
    edits = {"full_from_complexity": 3, "deadline_s": 5, "fallback_models": '["gpt-4o"]'}
    edits.update({"shadow_sample_percent": "10", "private": "on", "deferrable": "on"})
    staff_client.post(url, _category_form(strategy, **edits))
    edited = TaskCategory.objects.get(slug="strategy")
    assert (edited.full_from_complexity, edited.deadline_s, edited.private) == (3, 5, True)
    confirm = staff_client.get(f"/admin/routing/policyversion/{policy.pk}/restore/")
    assert "Restore the routing rules" in confirm.content.decode()
    staff_client.post(f"/admin/routing/policyversion/{policy.pk}/restore/")
    assert TaskCategory.objects.get(slug="strategy").full_from_complexity == 7
    latest = PolicyVersion.objects.first()
    assert latest.comment == f"restored version {policy.pk}"
    assert latest.snapshot["categories"] == policy.snapshot["categories"]


def test_rollout_advance_asks_confirmation_then_moves_users(staff_client, policy, api_client):
    from routing.experiments import rollout_set_percentage

    rollout_set_percentage(percent=Decimal("0"), actor="ops")
    before = _complete(api_client, category="chatbot", user="fan-9")
    assert before["reason"] == "control:legacy"
    page = staff_client.get("/admin/routing/rolloutsetting/").content.decode()
    assert "Advance to 10%" in page and 'id="arms"' in page and "control" in page
    confirm = staff_client.get("/admin/routing/rolloutsetting/move/?to=100")
    assert "Yes, advance to 100%" in confirm.content.decode()
    assert RolloutSetting.objects.get().routed_percent == 0  # a GET changes nothing
    staff_client.post("/admin/routing/rolloutsetting/move/", {"to": "100", "confirm": "yes"})
    assert RolloutSetting.objects.get().routed_percent == 100
    assert PolicyVersion.objects.first().actor == "ops"
    after = _complete(api_client, category="chatbot", user="fan-9")
    assert after["reason"] == "default:mini"


def test_rollout_move_enforces_csrf(policy):
    from django.test import Client

    user = get_user_model().objects.create_superuser("csrf", "c@example.com", "pw-for-tests")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.post("/admin/routing/rolloutsetting/move/", {"to": "50", "confirm": "yes"})
    assert response.status_code == 403
    assert RolloutSetting.objects.get().routed_percent == 100


def test_non_staff_users_are_refused(client, policy):
    user = get_user_model().objects.create_user("fan", "f@example.com", "pw-for-tests")
    client.force_login(user)
    for url in ("/admin/routing/rolloutsetting/", "/admin/routing/taskcategory/"):
        response = client.get(url)
        assert response.status_code == 302
        assert "/admin/login/" in response["Location"]
    client.post("/admin/routing/rolloutsetting/move/", {"to": "0", "confirm": "yes"})
    assert RolloutSetting.objects.get().routed_percent == 100


def test_flag_change_in_admin_is_versioned_and_applied(staff_client, policy, api_client):
    flag = FeatureFlag.objects.get(name="streaming")
    url = f"/admin/routing/featureflag/{flag.pk}/change/"
    response = staff_client.post(url, {"name": "streaming", "description": "", "api_keys": []})
    assert response.status_code == 302
    assert any(
        "flags.streaming.enabled: True -> False" in c for c in PolicyVersion.objects.first().changes
    )
    body = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
    refused = api_client.post("/api/v1/completions", body, format="json")
    assert refused.json()["error"]["code"] == "streaming_disabled"


def test_whatif_accepts_a_rollout_share_and_model_prices(staff_client, policy, api_client):
    for _ in range(2):
        _complete(api_client, category="chatbot")
    chatbot = TaskCategory.objects.get(slug="chatbot")
    url = f"/admin/routing/taskcategory/{chatbot.pk}/change/"
    form = _category_form(
        chatbot,
        is_default="on",
        _whatif="1",
        _whatif_routed_percent="100",
        _whatif_models='{"gpt-4o-mini": {"input_per_mtok_usd": "0", "output_per_mtok_usd": "0",'
        ' "cached_input_per_mtok_usd": "0"}}',
    )
    page = staff_client.post(url, form).content.decode()
    assert '<strong id="whatif-projected">$0.00</strong>' in page
    bad = staff_client.post(url, {**form, "_whatif_models": "{oops"}).content.decode()
    assert "Model price overrides must be JSON." in bad


def test_each_flag_says_what_it_does_and_who_it_is_on_for(staff_client, policy):
    # given one flag limited to a share of users and one switched off
    FeatureFlag.objects.filter(name="streaming").update(percent=Decimal("10"))
    FeatureFlag.objects.filter(name="batch").update(enabled=False)
    # when
    response = staff_client.get("/admin/routing/featureflag/")
    # then every row has a description, and no "-" stands for everyone
    import re

    rows = {
        re.search(r'<th class="field-name"><a[^>]*>(.*?)</a>', row).group(1): row
        for row in re.findall(r"<tr>.*?</tr>", response.content.decode(), re.DOTALL)
        if 'class="field-name"' in row
    }
    assert len(rows) == FeatureFlag.objects.count() == 6
    for row in rows.values():
        effect = re.search(r'<td class="field-effect">(.*?)</td>', row).group(1)
        assert len(effect) > 30
        assert '<td class="field-on_for">-</td>' not in row
    assert '<td class="field-on_for">everyone</td>' in rows["Routing"]
    assert '<td class="field-on_for">10% of users</td>' in rows["Streaming"]
    assert '<td class="field-on_for">nobody (off)</td>' in rows["Batch"]
