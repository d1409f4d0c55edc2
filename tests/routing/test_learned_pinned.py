"""The committed router artifacts' outputs on a few texts, pinned: a faster predict() must
give the same categories, probabilities, explanations (features, their order and weights) and
hashed features. Recorded from the code before issue 17 item 7's speed work; floats to 1e-6,
so only a change of behaviour fails, not another CPU's last bit."""

from pathlib import Path

import pytest

from routing.learned.model import load_router

ARTIFACTS = Path(__file__).resolve().parents[2] / "routing" / "learned" / "artifacts"
LONG = (
    "Read the material below and help me with it.\n\nOur subscriptions grew from 8,100 to 9,400 "
    "last quarter while churn stayed near 6%. The agency contract renews automatically unless "
    "either party gives 30 days notice. "
    * 12
    + "\n\nIs there anything here that could get me into legal trouble?"
)
TEXTS = (
    "",
    "hey babe how was your day? 😘",
    "Écris une légende Instagram pour nos baskets",
    "zzqx unbelievable ÄÖÜ 12345678 qwertyuiop!!",  # pieceless and many-piece words
    LONG,
)
# artifact -> per text: category, probabilities, (unsafe, needs premium, known n-grams), explanation
PINNED = {
    "router-20261206-e09a9fdf": [
        (
            "chatbot",
            {
                "chatbot": 0.405199,
                "moderation": 0.182653,
                "marketing": 0.035539,
                "analytics": 0.055627,
                "analytics_plus": 0.091429,
                "strategy": 0.035149,
                "compliance": 0.090965,
                "legal": 0.037672,
                "code": 0.065766,
            },
            (0.089456, 0.18272, 0),
            {
                "category": [],
                "safety": [],
                "needs_premium": [{"feature": "signal:score", "weight": -0.409}],
            },
        ),
        (
            "chatbot",
            {
                "chatbot": 0.932862,
                "moderation": 0.053624,
                "marketing": 0.000294,
                "analytics": 0.006094,
                "analytics_plus": 0.001271,
                "strategy": 0.000593,
                "compliance": 0.002821,
                "legal": 0.001531,
                "code": 0.000911,
            },
            (0.110176, 0.183641, 16),
            {
                "category": [
                    {"feature": "#len4", "weight": 0.759},
                    {"feature": "was", "weight": 0.71},
                    {"feature": "your", "weight": 0.579},
                ],
                "safety": [
                    {"feature": "your day", "weight": -0.85},
                    {"feature": "day", "weight": -0.431},
                    {"feature": "was", "weight": -0.245},
                ],
                "needs_premium": [{"feature": "signal:score", "weight": -0.373}],
            },
        ),
        (
            "moderation",
            {
                "chatbot": 0.271226,
                "moderation": 0.311472,
                "marketing": 0.201049,
                "analytics": 0.032716,
                "analytics_plus": 0.00615,
                "strategy": 0.021558,
                "compliance": 0.106363,
                "legal": 0.023323,
                "code": 0.026143,
            },
            (0.4275, 0.18272, 10),
            {
                "category": [
                    {"feature": "#len5", "weight": 0.27},
                    {"feature": "#lines0", "weight": 0.23},
                    {"feature": "#symbols0", "weight": 0.208},
                ],
                "safety": [
                    {"feature": "pour", "weight": -0.259},
                    {"feature": "instagram", "weight": -0.052},
                    {"feature": "baskets", "weight": -0.014},
                ],
                "needs_premium": [{"feature": "signal:score", "weight": -0.409}],
            },
        ),
        (
            "moderation",
            {
                "chatbot": 0.374701,
                "moderation": 0.513002,
                "marketing": 0.014185,
                "analytics": 0.020148,
                "analytics_plus": 0.001294,
                "strategy": 0.001585,
                "compliance": 0.008252,
                "legal": 0.061443,
                "code": 0.00539,
            },
            (0.501504, 0.183641, 9),
            {
                "category": [
                    {"feature": "!", "weight": 1.595},
                    {"feature": "! !", "weight": 0.525},
                    {"feature": "#len5", "weight": 0.341},
                ],
                "safety": [
                    {"feature": "!", "weight": 1.117},
                    {"feature": "! !", "weight": 0.51},
                    {"feature": "#lines0", "weight": 0.409},
                ],
                "needs_premium": [{"feature": "signal:score", "weight": -0.373}],
            },
        ),
        (
            "legal",
            {
                "chatbot": 0.028474,
                "moderation": 0.008117,
                "marketing": 0.005933,
                "analytics": 0.345876,
                "analytics_plus": 0.146889,
                "strategy": 0.058185,
                "compliance": 0.023833,
                "legal": 0.36379,
                "code": 0.018902,
            },
            (0.003, 0.198281, 81),
            {
                "category": [
                    {"feature": "contract", "weight": 0.765},
                    {"feature": "party", "weight": 0.4},
                    {"feature": "notice", "weight": 0.389},
                ],
                "safety": [
                    {"feature": "our", "weight": -0.437},
                    {"feature": ".", "weight": -0.268},
                    {"feature": "0", "weight": -0.255},
                ],
                "needs_premium": [],
            },
        ),
    ],
    "router-20261207-1b0e8ea2": [
        (
            "chatbot",
            {
                "chatbot": 0.723769,
                "moderation": 0.131592,
                "marketing": 0.007353,
                "analytics": 0.077611,
                "analytics_plus": 0.020854,
                "strategy": 0.005277,
                "compliance": 0.008093,
                "legal": 0.011586,
                "code": 0.013864,
            },
            (0.019163, 0.18272, 0),
            {
                "category": [],
                "safety": [],
                "needs_premium": [{"feature": "signal:score", "weight": -0.409}],
            },
        ),
        (
            "chatbot",
            {
                "chatbot": 0.872677,
                "moderation": 0.124851,
                "marketing": 0.000295,
                "analytics": 0.001129,
                "analytics_plus": 0.00016,
                "strategy": 0.000137,
                "compliance": 0.000237,
                "legal": 0.00027,
                "code": 0.000245,
            },
            (0.171153, 0.183641, 16),
            {
                "category": [
                    {"feature": "meaning:hey", "weight": 0.924},
                    {"feature": "meaning:babe", "weight": 0.577},
                    {"feature": "#len4", "weight": 0.493},
                ],
                "safety": [
                    {"feature": "your day", "weight": -0.76},
                    {"feature": "meaning:day", "weight": -0.364},
                    {"feature": "meaning:was", "weight": -0.29},
                ],
                "needs_premium": [{"feature": "signal:score", "weight": -0.373}],
            },
        ),
        (
            "moderation",
            {
                "chatbot": 0.056711,
                "moderation": 0.481489,
                "marketing": 0.04413,
                "analytics": 0.005218,
                "analytics_plus": 0.003142,
                "strategy": 0.00418,
                "compliance": 0.325337,
                "legal": 0.034905,
                "code": 0.04489,
            },
            (0.737881, 0.18272, 10),
            {
                "category": [
                    {"feature": "meaning:nos", "weight": 0.641},
                    {"feature": "meaning:instagram", "weight": 0.483},
                    {"feature": "meaning:gende", "weight": 0.434},
                ],
                "safety": [
                    {"feature": "meaning:instagram", "weight": 1.29},
                    {"feature": "meaning:gende", "weight": 1.034},
                    {"feature": "meaning:nos", "weight": 0.876},
                ],
                "needs_premium": [{"feature": "signal:score", "weight": -0.409}],
            },
        ),
        (
            "chatbot",
            {
                "chatbot": 0.487081,
                "moderation": 0.427517,
                "marketing": 0.002808,
                "analytics": 0.030417,
                "analytics_plus": 0.005789,
                "strategy": 0.008752,
                "compliance": 0.004008,
                "legal": 0.010852,
                "code": 0.022777,
            },
            (0.341388, 0.183641, 9),
            {
                "category": [
                    {"feature": "!", "weight": 0.99},
                    {"feature": "meaning:unbelievable", "weight": 0.795},
                    {"feature": "#len5", "weight": 0.304},
                ],
                "safety": [
                    {"feature": "ö", "weight": -0.299},
                    {"feature": "ü", "weight": -0.201},
                    {"feature": "0000", "weight": -0.137},
                ],
                "needs_premium": [{"feature": "signal:score", "weight": -0.373}],
            },
        ),
        (
            "legal",
            {
                "chatbot": 0.039031,
                "moderation": 0.027867,
                "marketing": 0.045659,
                "analytics": 0.171387,
                "analytics_plus": 0.100817,
                "strategy": 0.126813,
                "compliance": 0.073593,
                "legal": 0.374565,
                "code": 0.040269,
            },
            (0.005962, 0.198281, 81),
            {
                "category": [
                    {"feature": "meaning:contract", "weight": 0.7},
                    {"feature": "party", "weight": 0.345},
                    {"feature": "meaning:notice", "weight": 0.318},
                ],
                "safety": [
                    {"feature": "meaning:quarter", "weight": -0.431},
                    {"feature": "our", "weight": -0.392},
                    {"feature": ".", "weight": -0.381},
                ],
                "needs_premium": [],
            },
        ),
    ],
}


@pytest.mark.parametrize("artifact", sorted(PINNED))
def test_committed_artifacts_predict_as_pinned(artifact):
    router = load_router(str(ARTIFACTS / f"{artifact}.npz"))
    for text, (category, probabilities, scores, explanation) in zip(
        TEXTS, PINNED[artifact], strict=True
    ):
        prediction = router.predict(text)
        hashed = router.hashed_features(text)
        assert prediction.category == category
        assert prediction.probabilities == pytest.approx(probabilities, abs=1e-6)
        unsafe, needs_premium, ngrams = scores
        assert prediction.unsafe_probability == pytest.approx(unsafe, abs=1e-6)
        assert prediction.needs_premium == pytest.approx(needs_premium, abs=1e-6)
        assert prediction.explanation() == explanation
        assert len(hashed["ngrams"]) == ngrams
        from_hashes = router.needs_premium_from(dict(hashed["ngrams"]), hashed["signals"])
        assert from_hashes == pytest.approx(needs_premium, abs=1e-4)


def test_a_word_without_word_pieces_has_no_share_of_the_meaning():
    # given a pieceless word beside one that splits into two pieces: as many pieces as words
    router = load_router(str(ARTIFACTS / f"{sorted(PINNED)[-1]}.npz"))
    pieces = router.meaning.pieces_per_word({"ä": 1, "babes": 1})
    assert [len(p) for p in pieces] == [0, 2]
    # when the meaning vector's shares are split by word
    shares, names = router._meaning_parts(["ä", "babes"])
    # then the pieceless word has none; the other word has all of them
    assert names == ["meaning:ä", "meaning:babes"]
    assert not shares[0].any() and shares[1].any()
