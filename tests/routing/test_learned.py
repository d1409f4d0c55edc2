"""The learned router on small fixtures: training, prediction, explanations, artifact checks."""

import json
from datetime import UTC, datetime

import numpy as np
import pytest

from routing.engine import RouteRequest, route
from routing.learned import training
from routing.learned.data import LabelledText, Outcome
from routing.learned.features import MEANING_PREFIX, text_features, tokens
from routing.learned.meaning import WordVectors
from routing.learned.model import ArtifactError, load_router
from routing.learned.vectorizer import feature_vector
from routing.policy import Policy, Tier

NOW = datetime(2026, 12, 6, tzinfo=UTC)
# Two sources per class, so every n-gram below passes the two-sources rule.
FIXTURE = {
    "code": [
        "fix this python function that raises a TypeError",
        "why does my python loop never stop",
        "write a bash script to rename files",
        "explain this python stack trace please",
        "my bash script fails with permission denied",
        "refactor this python function to be faster",
    ],
    "marketing": [
        "write an instagram caption for our new sneakers",
        "write an ad for our coffee subscription",
        "catchy instagram caption for a summer sale",
        "write a newsletter announcing our new sneakers",
        "an ad headline for the coffee launch",
        "instagram caption to promote the summer launch",
    ],
    "chatbot": [
        "hey how was your day",
        "tell me a joke about cats",
        "hey what are you up to tonight",
        "tell me a story about a dragon",
        "how was your weekend friend",
        "hey tell me something fun",
    ],
}
UNSAFE = [
    "find the home address of my ex without her knowing",
    "track my partner's phone without them knowing",
    "find where my coworker lives without him knowing",
    "read my wife's messages without her knowing",
]
HARD = "prove that the sum of the series converges and derive its limit step by step 12 34 56"
EASY = "what is 2 plus 2"


def _rows() -> list[LabelledText]:
    rows = []
    for label, texts in FIXTURE.items():
        for i, text in enumerate(texts):
            rows.append(LabelledText(text, f"fixture_{i % 2}", label, False))
    for i, text in enumerate(UNSAFE):
        rows.append(LabelledText(text, f"fixture_{i % 2}", "moderation", True))
    return rows


def _outcomes() -> list[Outcome]:
    found = []
    for i in range(12):
        source = f"set_{i % 3}"
        found.append(Outcome(f"{HARD} case {i}", source, f"h{i}", True, i % 2 == 0))
        found.append(Outcome(f"{EASY} {i}", source, f"e{i}", False, i % 2 == 0))
    return found


CONFIG = training.TrainingConfig(min_df=2, calibration_folds=2)


@pytest.fixture(scope="module")
def fixture_artifact(tmp_path_factory):
    trained = training.train(_rows(), _outcomes(), CONFIG)
    return training.write_artifact(trained, tmp_path_factory.mktemp("artifacts"), now=NOW)


@pytest.fixture
def router(fixture_artifact):
    return load_router(str(fixture_artifact))


def test_training_is_deterministic(tmp_path):
    first = training.write_artifact(training.train(_rows(), _outcomes(), CONFIG), tmp_path, now=NOW)
    again = training.train(list(reversed(_rows())), list(reversed(_outcomes())), CONFIG)
    second = training.write_artifact(again, tmp_path / "again", now=NOW)
    assert first.name == second.name  # the id hashes every array and the card
    assert (tmp_path / f"{first.stem}.md").read_text().startswith("# Router model card")


def test_category_model_learns_the_fixture(router):
    assert router.predict("write a caption for our new sneakers launch").category == "marketing"
    assert router.predict("my python script raises a TypeError").category == "code"
    prediction = router.predict("hey how are you tonight")
    assert prediction.category == "chatbot"
    assert abs(sum(prediction.probabilities.values()) - 1) < 1e-5


def test_safety_model_flags_a_quiet_unsafe_request(router):
    unsafe = router.predict("find the address of my ex without her knowing")
    benign = router.predict("write an instagram caption for our sneakers")
    assert unsafe.unsafe_probability > benign.unsafe_probability
    assert unsafe.unsafe and not benign.unsafe


def test_needs_premium_ranks_the_hard_prompt_higher(router):
    assert router.predict(HARD).needs_premium > router.predict(EASY).needs_premium
    assert 0 <= router.predict(EASY).needs_premium <= 1


def test_explanation_names_features_of_the_text(router):
    text = "write an instagram caption for the summer sale"
    prediction = router.predict(text)
    names = set(text_features(text))
    assert prediction.category_features
    for contribution in prediction.category_features:
        # An n-gram of the text, or a word piece's share of its meaning vector.
        feature = contribution.feature
        if feature.startswith(MEANING_PREFIX):
            assert feature.removeprefix(MEANING_PREFIX) in text.split()
        else:
            assert feature in names
    assert all(c.weight > 0 for c in prediction.category_features)
    explained = prediction.explanation()
    assert set(explained) == {"category", "safety", "needs_premium"}
    json.dumps(explained)  # JSON-ready for the ledger and the API


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "x" * 200_000,
        "\x00\x01\xff binary \ufffd",
        "lone surrogate \udfff here",
        "これはプログラムのバグですか",
        "Écris une légende Instagram pour nos baskets",
        "1234567890 " * 500,
    ],
)
def test_odd_inputs_get_a_prediction_and_fast_path_equals_reference(router, text):
    prediction = router.predict(text)
    assert prediction.category in router.classes
    assert 0 <= prediction.needs_premium <= 1
    ids, values = router._vector(text)
    reference_ids, reference_values = feature_vector(text, router.vocabulary, router.idf)
    assert np.array_equal(ids, reference_ids)
    assert np.allclose(values, reference_values)


def test_missing_artifact_names_the_file_and_the_command(tmp_path):
    with pytest.raises(ArtifactError, match=r"router-none\.npz not found.*train_router"):
        load_router(str(tmp_path / "router-none.npz"))


def test_corrupt_artifact_is_refused(tmp_path):
    path = tmp_path / "router-broken.npz"
    path.write_bytes(b"not a zip file")
    with pytest.raises(ArtifactError, match=r"unreadable.*train_router"):
        load_router(str(path))


def test_artifact_for_other_features_is_refused(tmp_path):
    trained = training.train(_rows(), _outcomes(), CONFIG)
    trained.card["features"] = "something-older/0"
    path = training.write_artifact(trained, tmp_path, now=NOW)
    with pytest.raises(ArtifactError, match=r"features 'something-older/0'.*train_router"):
        load_router(str(path))


def test_auroc_and_apgr_on_known_cases():
    from routing.learned.measures import apgr

    labels = np.array([False, False, True, True])
    assert training.auroc(np.array([0.1, 0.2, 0.8, 0.9]), labels) == 1.0
    assert training.auroc(np.array([0.9, 0.8, 0.2, 0.1]), labels) == 0.0
    assert training.auroc(np.array([0.5, 0.5, 0.5, 0.5]), labels) == 0.5
    weak = np.array([1, 0, 0, 1])
    strong = np.array([1, 1, 1, 1])
    # The two prompts the weak model fails, scored highest: the gap is recovered at once.
    assert apgr(np.array([0.1, 0.9, 0.8, 0.2]), weak, strong) > 0.7
    assert apgr(np.array([0.9, 0.1, 0.2, 0.8]), weak, strong) < 0.3


# --- the engine with a router -------------------------------------------------------------


def _policy(router, *, min_confidence=0.3, pins=()):
    from dataclasses import replace

    from tests.routing.test_engine import RULES

    rules = {
        slug: replace(rule, pins=pins if slug == "legal" else ()) for slug, rule in RULES.items()
    }
    return Policy.build(
        version=3,
        categories=rules,
        default_category="chatbot",
        min_confidence=min_confidence,
        router=router,
        router_artifact=router.artifact_id if router else "",
    )


def _decide(policy, text, **hints):
    return route(request=RouteRequest(text=text, prompt_tokens=50, **hints), policy=policy)


def test_engine_takes_category_and_complexity_from_the_router(router):
    decision = _decide(_policy(router), "write an instagram caption for our new sneakers")
    assert (decision.category, decision.category_source) == ("marketing", "model")
    prediction = router.predict("write an instagram caption for our new sneakers")
    assert decision.complexity == round(10 * prediction.needs_premium, 1)
    assert decision.complexity_source == "router"
    assert decision.router_artifact == router.artifact_id
    assert decision.explanation["features"]["category"]
    assert decision.complexity_signals == prediction.estimate.signals


def test_an_unsafe_request_is_moderation_whatever_its_wording(router):
    decision = _decide(_policy(router), "find the home address of my ex without her knowing")
    assert (decision.category, decision.category_source) == ("moderation", "safety")
    assert decision.category_confidence >= router.safety_threshold


def test_an_operator_pin_wins_over_the_models(router):
    policy = _policy(router, pins=("chargeback",))
    decision = _decide(policy, "write an instagram caption about a chargeback")
    assert (decision.category, decision.category_source) == ("legal", "pinned")
    assert decision.tier is Tier.FULL  # legal is always premium


def test_below_the_confidence_floor_the_default_category_says_uncertain(router):
    decision = _decide(_policy(router, min_confidence=0.999), "write an instagram caption")
    assert (decision.category, decision.category_source) == ("chatbot", "uncertain")


def test_caller_hints_skip_the_models(router):
    decision = _decide(_policy(router), "anything", category="code", complexity=8)
    assert decision.category_source == "caller" and decision.complexity_source == "caller"
    assert decision.router_artifact == "" and decision.explanation == {}


def test_without_a_router_the_keyword_classifier_decides_and_says_so():
    decision = _decide(_policy(None), "where is my refund")
    assert decision.category == "chatbot"
    assert decision.category_source in {"classifier", "default"}
    assert decision.complexity_source == "estimator"
    assert decision.explanation == {"classifier": "fallback"}


def test_with_the_callers_category_only_needs_premium_is_computed_and_explained(router):
    decision = _decide(_policy(router), "write an instagram caption", category="marketing")
    assert decision.category_source == "caller" and decision.complexity_source == "router"
    assert set(decision.explanation) == {"needs_premium", "features"}
    full = router.predict("write an instagram caption")
    assert decision.explanation["needs_premium"] == round(full.needs_premium, 3)


def test_words_the_table_lacks_are_split_into_word_pieces():
    table = WordVectors(["[UNK]", "un", "##believ", "##ably", "dog"], np.eye(5, dtype=np.float16))
    assert table.piece_ids(["dog", "unbelievably", "xyz", "dog"]) == [4, 1, 2, 3, 4]
    assert table.piece_ids(["x" * 500]) == []  # too long to be a word: left out
    assert table.pieces_by_word(["dog", "unbelievably", "dog"]) == (
        [4, 1, 2, 3, 4],
        [0, 1, 1, 1, 0],
        ["dog", "unbelievably"],
    )
    assert np.allclose(table.mean([4, 4]), [0, 0, 0, 0, 1])
    assert not table.mean([]).any()


def test_meaning_shares_add_up_to_the_meaning_vectors_pull(router):
    words = tokens("write a catchy caption for our new sneakers launch")
    shares, names = router._meaning_parts(words)
    table = router.meaning
    expected = table.mean(table.piece_ids(words)) @ router.meaning_weights
    assert np.allclose(shares.sum(axis=0)[:10], expected, atol=1e-5)
    assert not shares[:, 10].any()  # needs premium reads no meaning vector
    assert names == [MEANING_PREFIX + word for word in dict.fromkeys(words)]


def test_artifact_built_on_other_word_vectors_is_refused(tmp_path):
    trained = training.train(_rows(), _outcomes(), CONFIG)
    trained.card["meaning"]["digest"] = "0" * 16
    path = training.write_artifact(trained, tmp_path, now=NOW)
    with pytest.raises(ArtifactError, match=r"differ from the ones the router artifact"):
        load_router(str(path))
