"""The embedding cache of scripts/safety_encoder_ceiling.py (its encoder needs torch; a fake
stands in), so a rerun encodes only texts it has not seen."""

import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@pytest.fixture
def ceiling(monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPTS))
    monkeypatch.delitem(sys.modules, "safety_encoder_ceiling", raising=False)
    import safety_encoder_ceiling

    return safety_encoder_ceiling


class FakeEncoder:
    """Encodes a text as (length, 1), and remembers what it was asked to encode."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def encode(self, texts):
        self.seen.extend(texts)
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)

    def token_count(self, text: str) -> int:
        return len(text.split())


def test_embeddings_come_back_in_order_and_are_encoded_once(ceiling, tmp_path):
    # given a cache that already holds one text
    cache = tmp_path / "vectors.npz"
    first = FakeEncoder()
    ceiling.embeddings(["kill the process"], cache, lambda: first, batch_size=2)

    # when three texts (one repeated, one cached) are asked for
    second = FakeEncoder()
    texts = ["a much longer text than the others", "kill the process", "hi", "hi"]
    vectors = ceiling.embeddings(texts, cache, lambda: second, batch_size=2)

    # then each row is its own text's vector, and only the new texts were encoded, shortest first
    assert vectors[:, 0].tolist() == [len(t) for t in texts]
    assert second.seen == ["hi", "a much longer text than the others"]
    assert first.seen == ["kill the process"]


def test_a_cache_that_covers_every_text_never_builds_the_encoder(ceiling, tmp_path):
    cache = tmp_path / "vectors.npz"
    ceiling.embeddings(["hello"], cache, FakeEncoder, batch_size=2)

    def no_encoder():
        raise AssertionError("the encoder was built although every text was cached")

    assert ceiling.embeddings(["hello"], cache, no_encoder).shape == (1, 2)
