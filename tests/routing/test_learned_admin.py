"""The router artifact as an operator meets it: part of the policy version, switched and
restored in admin, refused at start-up when it cannot load, keyword fallback when allowed."""

from datetime import UTC, datetime, timedelta

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
    assert version.snapshot["router"] == {"artifact": first, "trial": "", "trial_percent": "0.00"}
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


def _write_traindata(folder):
    """The fixture rows in the shape of ../shared/traindata."""
    import json

    from tests.routing.test_learned import EASY, FIXTURE, HARD, UNSAFE

    folder.mkdir()
    with (folder / "categories.jsonl").open("w") as handle:
        for label, texts in FIXTURE.items():
            for i, text in enumerate(texts):
                handle.write(json.dumps({"text": text, "label": label, "source": f"s{i % 2}"}))
                handle.write("\n")
    with (folder / "safety_pairs.jsonl").open("w") as handle:
        for i, text in enumerate(UNSAFE):
            handle.write(json.dumps({"text": text, "unsafe": True, "source": f"s{i % 2}"}) + "\n")
    with (folder / "outcomes.jsonl").open("w") as handle:
        for i in range(12):
            for text, strong, weak in ((f"{HARD} case {i}", 1.0, 0.0), (f"{EASY} {i}", 1.0, 1.0)):
                row = {
                    "text": text,
                    "source": f"set{i % 3}",
                    "dataset": f"set{i % 3}",
                    "prompt_id": text,
                    "model_strong": "gpt-4o-2024-05-13",
                    "model_weak": "gpt-4o-mini-2024-07-18",
                    "score_strong": strong,
                    "score_weak": weak,
                }
                handle.write(json.dumps(row) + "\n")


def test_train_router_with_verdicts_refits_and_shows_the_what_if(artifacts, tmp_path, api_key):
    from io import StringIO

    from django.core.management import call_command

    from routing.models import QualityEvaluation
    from tests.routing.test_learned import HARD

    policy_seed()
    router = policy_get().router
    for i, (text, verdict) in enumerate(
        [(HARD, "premium_better"), ("write a caption", "tie"), (HARD + " again", "premium_better")]
    ):
        QualityEvaluation.objects.create(
            request_id=f"req-{i}",
            created_at=datetime(2026, 12, 1, tzinfo=UTC),
            api_key=api_key[0],
            category="code",
            complexity=1.0,
            cheap_model="gpt-4o-mini",
            premium_model="gpt-4o",
            judge_model="gpt-4o",
            verdict=verdict,
            verdict_ab=verdict,
            verdict_ba=verdict,
            extra_cost_usd=0,
            features=router.hashed_features(text),
        )
    _write_traindata(tmp_path / "traindata")
    out = StringIO()
    call_command(
        "train_router",
        "--with-verdicts",
        "--no-activate",
        f"--traindata={tmp_path / 'traindata'}",
        f"--evaldata={tmp_path / 'none'}",
        f"--examples={tmp_path / 'none'}",
        f"--out={tmp_path / 'out'}",
        stdout=out,
    )
    text = out.getvalue()
    assert "3 verdicts of our own traffic" in text
    assert "what-if on 3 judged requests" in text
    code_line = next(line for line in text.splitlines() if line.startswith("code "))
    assert code_line.split()[1:4] == ["3", "2", "7"]  # judged, premium better, threshold
    (artifact,) = (tmp_path / "out").glob("router-*.npz")
    from routing.learned.model import load_router

    assert load_router(str(artifact)).card["data"]["verdict_rows"] == 3
    assert not (tmp_path / "out" / "CURRENT").exists()  # --no-activate


def test_train_router_with_verdicts_but_none_kept_says_so(artifacts, tmp_path):
    from django.core.management import CommandError, call_command

    policy_seed()
    _write_traindata(tmp_path / "traindata")
    with pytest.raises(CommandError, match="No shadow verdict"):
        call_command("train_router", "--with-verdicts", f"--traindata={tmp_path / 'traindata'}")


def test_a_trial_router_decides_for_a_sticky_share_and_shows_its_own_figures(
    staff_client, artifacts, api_client
):
    from routing.engine import RouteRequest, route
    from routing.selectors import router_artifact_metrics
    from tests.waits import after_response_settled

    first, second = artifacts
    policy_seed()
    response = staff_client.post(
        "/admin/routing/rolloutsetting/router/trial/", {"artifact": second, "percent": "50"}
    )
    assert response.status_code == 302
    version = PolicyVersion.objects.latest("id")
    assert f"router.trial: '' -> '{second}'" in version.changes
    policy = policy_get()

    def decided_by(subject: str) -> str:
        request = RouteRequest(text="write an instagram caption", prompt_tokens=20, subject=subject)
        return route(request=request, policy=policy).router_artifact

    by_subject = {f"user:{i}": decided_by(f"user:{i}") for i in range(200)}
    share = sum(a == second for a in by_subject.values()) / len(by_subject)
    assert 0.35 < share < 0.65
    assert all(decided_by(s) == a for s, a in list(by_subject.items())[:20])  # sticky

    for i in range(6):
        api_client.post(
            "/api/v1/completions",
            {"messages": [{"role": "user", "content": "hey there"}], "user": f"fan-{i}"},
            format="json",
        )
    after_response_settled()
    now = datetime.now(UTC)
    metrics = router_artifact_metrics(start=now - timedelta(hours=1), end=now + timedelta(1))
    assert sum(m["requests"] for m in metrics.values()) == 6
    assert set(metrics) <= {first, second}
    page = staff_client.get("/admin/routing/rolloutsetting/").content.decode()
    assert 'id="router-trial">' + second in page and "(trial on 50%)" in page

    # Using the trial's router for everyone ends the trial.
    staff_client.post("/admin/routing/rolloutsetting/router/", {"artifact": second})
    policy = policy_get()
    assert policy.router.artifact_id == second and policy.trial_router is None


def test_a_trial_ends_at_zero_percent_and_refuses_bad_input(staff_client, artifacts):
    first, second = artifacts
    policy_seed()
    url = "/admin/routing/rolloutsetting/router/trial/"
    staff_client.post(url, {"artifact": second, "percent": "10"})
    assert policy_get().trial_router.artifact_id == second
    staff_client.post(url, {"artifact": second, "percent": "0"})
    assert policy_get().trial_router is None
    assert PolicyVersion.objects.latest("id").comment == "router trial ended"
    before = PolicyVersion.objects.count()
    page = staff_client.post(url, {"artifact": second, "percent": "150"}, follow=True)
    assert "outside 0-100" in page.content.decode()
    page = staff_client.post(url, {"artifact": second, "percent": "lots"}, follow=True)
    assert "Choose a trial share" in page.content.decode()
    assert PolicyVersion.objects.count() == before


def test_a_version_whose_artifact_file_is_gone_is_served_by_the_current_one(
    staff_client, artifacts, api_client, settings
):
    first, second = artifacts
    policy_seed()
    staff_client.post("/admin/routing/rolloutsetting/router/", {"artifact": second})
    staff_client.post(
        "/admin/routing/rolloutsetting/router/trial/", {"artifact": second, "percent": "0"}
    )
    # The file of the version's router disappears (a clean-up, a bad deploy).
    settings.ROUTER_ARTIFACT_DIR = str(_copy_without(settings.ROUTER_ARTIFACT_DIR, second))
    policy_cache_clear()
    assert policy_get().router.artifact_id == first
    response = api_client.post(
        "/api/v1/route",
        {"messages": [{"role": "user", "content": "hello there"}]},
        format="json",
    )
    assert response.status_code == 200 and response.json()["router_artifact"] == first
    page = staff_client.get("/admin/routing/rolloutsetting/").content.decode()
    assert f"names router {second}, which does not load" in page


def _copy_without(folder: str, artifact_id: str):
    import shutil
    import tempfile
    from pathlib import Path

    copy = Path(tempfile.mkdtemp()) / "artifacts"
    shutil.copytree(folder, copy)
    (copy / f"{artifact_id}.npz").unlink()
    return copy


def test_a_new_version_whose_router_cannot_load_leaves_the_running_one_in_place(
    artifacts, settings
):
    from routing.models import RolloutSetting
    from routing.policy_versions import policy_version_create

    first, _ = artifacts
    policy_seed()
    running = policy_get()
    # CURRENT now names a file that is not there, and an unrelated change publishes a version.
    settings.ROUTER_ARTIFACT = "router-19990101-gone"
    RolloutSetting.objects.update(router_artifact="")
    newer = policy_version_create(actor="ops", comment="unrelated change")
    assert newer.snapshot["router"]["artifact"] == "router-19990101-gone"
    settings.POLICY_REFRESH_S = 0
    kept = policy_get()
    assert kept.version == running.version and kept.router.artifact_id == first
