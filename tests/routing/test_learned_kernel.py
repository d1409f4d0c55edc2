"""The compiled scoring kernel (routing/learned/kernel.pyx) against the numpy scoring it replaces:
the same sums, probabilities, best class and explanations on varied texts, both committed
artifacts, and a needs-premium model that reads n-grams. `make test` builds the kernel first."""

import dataclasses
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from routing import complexity
from routing.learned import features, runtime
from routing.learned import model as learned_model
from routing.learned.features import tokens
from routing.learned.model import load_router

ARTIFACTS = Path(__file__).resolve().parents[2] / "routing" / "learned" / "artifacts"
FIELDS = ("category", "safety_up", "safety_down", "premium_up", "premium_down")


def artifact_routers():
    return [load_router(str(path)) for path in sorted(ARTIFACTS.glob("router-*.npz"))]


def varied_texts(router, count: int) -> list[str]:
    """Texts of the router's own words (so bigrams hit), unknown words, digits, symbols,
    emoji and other scripts, from one word to past the window's length."""
    rng = random.Random(17)
    known = [name for name in router.feature_names if " " not in name and name.isalpha()]
    odd = ["zzqx", "qwertyuiop", "Ä", "日本語", "😘", "12345678", "!!", "\n", "élan", "-"]
    texts = ["", " ", "\x00\x01 binary", "a" * 5000, "kill " * 400]
    for _ in range(count):
        size = rng.choice([1, 3, 8, 20, 60, 300])
        words = [rng.choice(known) if rng.random() < 0.8 else rng.choice(odd) for _ in range(size)]
        texts.append(" ".join(words))
    return texts


def scores_both_ways(router, text: str):
    words = tokens(text)
    compiled = router._scores(text, read_text=True)
    times = Counter(words) if router.meaning is not None else {}
    reference = router._numpy_scores(text, words, times, read_text=True)
    return compiled, reference


def assert_same_scores(compiled, reference) -> None:
    assert compiled.best == reference.best
    assert compiled.sums == pytest.approx(reference.sums, abs=1e-5)
    assert compiled.probabilities == pytest.approx(reference.probabilities, abs=1e-6)
    for name in FIELDS:
        ours, theirs = getattr(compiled, name), getattr(reference, name)
        assert [c.weight for c in ours] == pytest.approx([c.weight for c in theirs], abs=1e-5)
        # Equal weights may be named in either order when numpy ranks more than 48 rows.
        tied = len({round(c.weight, 5) for c in theirs}) < len(theirs)
        if not tied:
            assert [c.feature for c in ours] == [c.feature for c in theirs], name


def test_the_kernel_is_built():
    assert learned_model.CompiledScorer is not None, (
        "routing/learned/kernel.pyx is not compiled: run make install "
        f"({learned_model.BUILD_KERNEL_COMMAND})"
    )
    assert all(router.kernel is not None for router in artifact_routers())


@pytest.mark.parametrize("router", artifact_routers(), ids=lambda r: r.artifact_id)
def test_kernel_scores_as_numpy_does(router):
    for text in varied_texts(router, 300):
        compiled, reference = scores_both_ways(router, text)
        assert_same_scores(compiled, reference)


def test_kernel_ranks_needs_premium_ngrams_as_numpy_does():
    # given an artifact whose needs-premium model reads n-grams (the committed ones read none)
    base = artifact_routers()[-1]
    weights = np.random.default_rng(3).normal(size=len(base.feature_names)).astype(np.float32)
    router = dataclasses.replace(base, premium_weights=weights, premium_uses_ngrams=True)
    twin, explained = numpy_router(router), 0
    for text in varied_texts(router, 100):
        # when both score it, then needs premium's contributions agree too
        compiled, reference = scores_both_ways(router, text)
        explained += bool(compiled.premium_up and compiled.premium_down)
        assert_same_scores(compiled, reference)
        # and so does the explanation that merges them with the signals
        ours, theirs = router.predict(text), twin.predict(text)
        weights = [round(c.weight, 5) for c in theirs.premium_features]
        if len(set(weights)) == len(weights):
            assert ours.explanation()["needs_premium"] == theirs.explanation()["needs_premium"]
    assert explained > 90


def numpy_router(router):
    """The same router, scoring with numpy (as where the kernel is not compiled)."""
    original = learned_model.CompiledScorer
    learned_model.CompiledScorer = None
    try:
        return dataclasses.replace(router)
    finally:
        learned_model.CompiledScorer = original


def test_without_the_kernel_numpy_predicts_the_same():
    # given a router built where the kernel is not compiled
    router = artifact_routers()[-1]
    slow = numpy_router(router)
    assert slow.kernel is None
    # when both predict, then the decisions and their explanations are the same
    for text in varied_texts(router, 40):
        fast_prediction, slow_prediction = router.predict(text), slow.predict(text)
        assert fast_prediction.category == slow_prediction.category
        assert fast_prediction.unsafe_probability == pytest.approx(
            slow_prediction.unsafe_probability, abs=1e-6
        )
        assert fast_prediction.needs_premium == slow_prediction.needs_premium


def test_a_missing_kernel_is_a_system_check_warning(monkeypatch):
    monkeypatch.setattr(runtime, "CompiledScorer", None)
    found = runtime.router_artifact_check()
    assert [message.id for message in found] == ["routing.W002"]
    assert "scoring kernel" in found[0].msg and "complexity" not in found[0].msg
    assert "scripts/build_kernel.py" in found[0].hint
    monkeypatch.undo()
    assert runtime.router_artifact_check() == []


def test_missing_complexity_counts_are_a_system_check_warning(monkeypatch):
    monkeypatch.setattr(complexity, "COUNTS_COMPILED", False)
    found = runtime.router_artifact_check()
    assert [message.id for message in found] == ["routing.W002"]
    assert "complexity estimate's counts" in found[0].msg and "kernel" not in found[0].msg


def test_compiled_tokens_and_shapes_are_the_pythons(monkeypatch):
    # given ASCII texts of every character, letters, digit runs and whitespace of all kinds
    rng = random.Random(5)
    alphabet = [chr(i) for i in range(128)] + ["abc", "Hello", "123456", "00000", " ", "\x1c"]
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80))) for _ in range(3000)]
    # when they are tokenised and shaped compiled and by the regexes and byte counts, then
    # the tokens and shape features are the same
    compiled = [(tokens(text), features.shape_features(text)) for text in texts]
    monkeypatch.setattr(features, "ascii_tokens", None)
    monkeypatch.setattr(features, "ascii_shape_counts", None)
    assert compiled == [(tokens(text), features.shape_features(text)) for text in texts]


def test_a_word_past_the_memos_bound_is_still_one_word(monkeypatch):
    # given word vectors whose memo of split words is full, and a kernel keeping no new words
    router = artifact_routers()[-1]
    monkeypatch.setattr(router.meaning, "_memo_limit", 0)
    full = dataclasses.replace(router)
    object.__setattr__(full, "kernel", router._compiled_scorer(new_words=0))
    text = "qzxwv qzxwv qzxwv and more qzxwv"
    assert "qzxwv" not in router.meaning.memo
    # when the text is scored, then the repeated word is one word, as numpy counts it
    for scoring in (router, full):
        compiled, reference = scores_both_ways(scoring, text)
        assert_same_scores(compiled, reference)
        names = [c.feature for c in compiled.safety_up + compiled.safety_down]
        assert names.count("meaning:qzxwv") <= 1


def test_the_float16_vectors_give_the_same_sums_to_the_bit():
    # given the kernel reading the word vectors' float16 copy (where the CPU has F16C), and
    # one reading them as float32
    router = artifact_routers()[-1]
    full = router._compiled_scorer(half_vectors=False)
    cpu = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    assert router.kernel.reads_half_vectors == (" f16c" in cpu and " avx" in cpu)
    assert not full.reads_half_vectors
    for text in varied_texts(router, 100):
        words = tokens(text)
        # when both score a text, then every sum and probability is the same float
        assert router.kernel.score(words, [], False)[:3] == full.score(words, [], False)[:3]


@pytest.mark.parametrize("new_words", [50_000, 0])
def test_reading_the_characters_gives_what_the_tokens_give(monkeypatch, new_words):
    # given a kernel that keeps new words, and one whose table is full from the start (no
    # new word joins it, and the word vectors' memo is full too)
    router = artifact_routers()[-1]
    if not new_words:
        monkeypatch.setattr(router.meaning, "_memo_limit", 0)
    kernel = router._compiled_scorer(new_words=new_words)
    assert kernel.reads_text
    rng = random.Random(23)
    alphabet = [chr(i) for i in range(128)] + ["qzxwv ", "hello ", "123456 ", "kill him "] * 8
    texts = ["", "qzxwv qzxwv qzxwv and more qzxwv", *varied_texts(router, 150)]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 400))) for _ in range(300)]
    shape_ids = [router.vocabulary["#len3"]]
    for text in texts:
        window = features.ascii_window(text)
        if window is None:
            continue
        # when the kernel reads the window's characters and when it is given its tokens,
        # then every sum, probability and named contribution is the same
        assert kernel.score_text(window, shape_ids, True) == kernel.score(
            tokens(text), shape_ids, True
        )


def test_reading_characters_is_for_ascii_windows_only():
    router = artifact_routers()[-1]
    assert features.ascii_window("Café au lait") is None
    with pytest.raises(ValueError, match="ASCII"):
        router.kernel.score_text("café", [], False)
