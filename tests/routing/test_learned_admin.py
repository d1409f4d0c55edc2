"""The router artifact as an operator meets it: part of the policy version, switched and
restored in admin, refused at start-up when it cannot load, keyword fallback when allowed."""

from datetime import UTC, datetime

import pytest
from django.contrib.auth import get_user_model

from routing.learned import training
from routing.learned.model import ArtifactError
from routing.learned.runtime import router_artifact_check
from routing.models import PolicyVersion
from routing.policy_versions import policy_seed, policy_version_restore
from routing.selectors import policy_cache_clear, policy_get
from tests.routing.test_learned import CONFIG, _outcomes, _rows

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def two_artifacts(tmp_path_factory):
    """Two fixture artifacts (different training days, so different ids) in one folder."""
    folder = tmp_path_factory.mktemp("router-artifacts")
    trained = training.train(_rows(), _outcomes(), CONFIG)
    first = training.write_artifact(trained, folder, now=datetime(2026, 12, 1, tzinfo=UTC))
    second = training.write_artifact(trained, folder, now=datetime(2026, 12, 2, tzinfo=UTC))
    return folder, first.stem, second.stem


@pytest.fixture
def artifacts(settings, two_artifacts, tmp_path):
    folder, first, second = two_artifacts
    settings.ROUTER_ARTIFACT_DIR = str(folder)
    settings.ROUTER_ARTIFACT = first  # what CURRENT would say
    policy_cache_clear()
    yield first, second
    policy_cache_clear()


@pytest.fixture
def staff_client(client):
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw-for-tests")
    client.force_login(user)
    return client


def test_the_policy_version_names_its_artifact(artifacts):
    first, _ = artifacts
    version = policy_seed()
    assert version.snapshot["router"] == {"artifact": first}
    assert policy_get().router.artifact_id == first


def test_rollout_page_shows_the_router_in_use(staff_client, artifacts):
    first, second = artifacts
    policy_seed()
    page = staff_client.get("/admin/routing/rolloutsetting/").content.decode()
    assert 'id="router-in-use">' + first in page
    assert second in page and "Use this router" in page
    assert "category acc. (held-out sources)" in page


def test_switching_the_artifact_is_a_policy_version_and_restore_brings_it_back(
    staff_client, artifacts
):
    first, second = artifacts
    seeded = policy_seed()
    response = staff_client.post(
        "/admin/routing/rolloutsetting/router/", {"artifact": second, "comment": "new router"}
    )
    assert response.status_code == 302
    switched = PolicyVersion.objects.latest("id")
    assert switched.comment == "new router"
    assert f"router.artifact: '{first}' -> '{second}'" in switched.changes
    assert policy_get().router.artifact_id == second

    policy_version_restore(version=seeded, actor="ops")
    assert policy_get().router.artifact_id == first
    assert PolicyVersion.objects.latest("id").snapshot["router"]["artifact"] == first


def test_an_unknown_artifact_is_refused_in_admin(staff_client, artifacts):
    policy_seed()
    before = PolicyVersion.objects.count()
    response = staff_client.post(
        "/admin/routing/rolloutsetting/router/", {"artifact": "router-nope"}, follow=True
    )
    assert "No router artifact named" in response.content.decode()
    assert PolicyVersion.objects.count() == before


def test_a_missing_artifact_stops_start_up_with_the_fix(settings, artifacts):
    settings.ROUTER_ARTIFACT = "router-19990101-gone"
    errors = router_artifact_check()
    assert [e.id for e in errors] == ["routing.E001"]
    assert "router-19990101-gone.npz not found" in errors[0].msg
    assert "python manage.py train_router" in errors[0].msg
    with pytest.raises(ArtifactError, match="router-19990101-gone"):
        policy_seed()
        policy_get()


def test_with_the_fallback_on_a_missing_artifact_routes_by_keywords(
    settings, artifacts, staff_client, api_client
):
    settings.ROUTER_ARTIFACT = "router-19990101-gone"
    settings.ROUTER_KEYWORD_FALLBACK = True
    assert [e.id for e in router_artifact_check()] == ["routing.W001"]
    policy_seed()
    assert policy_get().router is None
    response = api_client.post(
        "/api/v1/route",
        {"messages": [{"role": "user", "content": "where is my refund?"}]},
        format="json",
    )
    assert response.status_code == 200
    data = response.json()
    assert data["explanation"] == {"classifier": "fallback"}
    assert data["router_artifact"] == ""
    page = staff_client.get("/admin/routing/rolloutsetting/").content.decode()
    assert "classifier:fallback" in page


def test_a_ledger_row_shows_its_router_and_explanation_in_admin(
    staff_client, artifacts, api_client
):
    from tests.waits import after_response_settled
    from usage.models import UsageRecord

    first, _ = artifacts
    policy_seed()
    response = api_client.post(
        "/api/v1/completions",
        {"messages": [{"role": "user", "content": "write an instagram caption for our sneakers"}]},
        format="json",
    )
    assert response.status_code == 200
    after_response_settled()
    row = UsageRecord.objects.get()
    assert row.router_artifact == first
    listing = staff_client.get(f"/admin/usage/usagerecord/?router_artifact={first}")
    assert row.request_id in listing.content.decode()
    page = staff_client.get(f"/admin/usage/usagerecord/{row.pk}/change/").content.decode()
    assert first in page and "needs_premium" in page
