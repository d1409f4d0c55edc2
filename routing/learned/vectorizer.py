"""A text as the models read it: the ids of its known features and their weights.

Two ways to the same answer. `feature_vector` is the reference: look each of
text_features() up in the vocabulary and weigh it (1 + log tf) x idf, L2-normalised; training
uses it. `NgramLookup` finds the same ids at half the cost, for the runtime (Router): each word
is looked up once, and a bigram is a pair of word numbers found by one vectorised search
(tests/routing/test_learned.py holds the two equal). `feature_hash` is what a stored shadow
verdict keeps of a feature instead of its words.
"""

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from itertools import chain, repeat

import numpy as np

from routing.learned.features import shape_features, text_features

# Up to this many tokens (a chat message), features are found by name in the vocabulary and
# counted with a Counter: cheaper than numpy's fixed cost per call, which pays off on long texts.
SHORT_TEXT_TOKENS = 64


def counted(found: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the distinct ids, sorted, and how often each occurs (np.unique's answer)."""
    if len(found) > SHORT_TEXT_TOKENS:
        return np.unique(found, return_counts=True)
    counts = Counter(found.tolist() if isinstance(found, np.ndarray) else found)
    ids = sorted(counts)
    return np.array(ids, dtype=np.int64), np.array([counts[i] for i in ids], dtype=np.int64)


class NgramLookup:
    """The vocabulary ids of a text's features without building its bigram strings.

    The same ids as looking text_features() up in the vocabulary (a test holds them equal),
    at half the cost: each word is looked up once as a string, and a bigram is then a pair of
    word numbers, found in a sorted array of pair keys by one vectorised search.
    """

    def __init__(self, vocabulary: Mapping[str, int]) -> None:
        words: dict[str, int] = {}
        pairs = []
        for name, feature_id in vocabulary.items():
            first, _, second = name.partition(" ")
            if second:
                a = words.setdefault(first, len(words))
                b = words.setdefault(second, len(words))
                pairs.append((a, b, feature_id))
        for name in vocabulary:
            if " " not in name:
                words.setdefault(name, len(words))
        self.words = words  # a word not in it is number len(words), "unknown"
        self.width = len(words) + 1
        # Feature ids as int32 where they sit in tables a request reads at random (half the
        # cache lines); the ids returned are int64 (the shape features' array promotes them).
        self.unigram = np.full(len(words) + 1, -1, dtype=np.int32)  # the last: unknown word
        for name, number in words.items():
            self.unigram[number] = vocabulary.get(name, -1)
        # A bigram's key is its two word numbers as one int: int32 while they fit, so the
        # sorted keys take half the cache.
        key_type = np.int32 if self.width**2 < 2**31 else np.int64
        keys = np.array([a * self.width + b for a, b, _ in pairs], dtype=np.int64)
        order = np.argsort(keys)
        self.pair_keys = keys[order].astype(key_type)
        self.pair_ids = np.array([p[2] for p in pairs], dtype=np.int32)[order]
        self.vocabulary = vocabulary

    def counted_ids(self, text: str, found_tokens: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Return the distinct ids of the text's features, sorted, and how often each occurs;
        found_tokens are tokens(text)."""
        if len(found_tokens) > SHORT_TEXT_TOKENS:
            return counted(self.ids(text, found_tokens))
        bigrams = map(" ".join, zip(found_tokens, found_tokens[1:], strict=False))
        names = chain(found_tokens, bigrams, shape_features(text))
        return counted([i for i in map(self.vocabulary.get, names) if i is not None])

    def ids(self, text: str, found_tokens: list[str]) -> np.ndarray:
        """Return the ids of the text's features; found_tokens are tokens(text)."""
        unknown = self.width - 1
        numbers = np.fromiter(
            map(self.words.get, found_tokens, repeat(unknown)),
            dtype=np.int64,
            count=len(found_tokens),
        )
        unigrams = self.unigram.take(numbers)
        found = [unigrams[unigrams >= 0]]
        if len(numbers) > 1 and len(self.pair_keys):
            # A key with the unknown word's number is no bigram's key: it finds nothing.
            # Sorted, the searches walk the table in one direction and share cached lines.
            keys = np.sort((numbers[:-1] * self.width + numbers[1:]).astype(self.pair_keys.dtype))
            at = np.minimum(np.searchsorted(self.pair_keys, keys), len(self.pair_keys) - 1)
            hit = self.pair_keys.take(at) == keys
            found.append(self.pair_ids.take(at[hit]))
        shape = [self.vocabulary[n] for n in shape_features(text) if n in self.vocabulary]
        found.append(np.array(shape, dtype=np.int64))
        return np.concatenate(found)


def feature_hash(name: str) -> str:
    """Return a feature's 12-hex-digit hash: what a stored verdict keeps instead of words."""
    return hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=6).hexdigest()


def feature_vector(
    text: str, vocabulary: Mapping[str, int], idf: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return the text's known feature ids and their (1 + log tf) x idf, L2-normalised (the
    reference that training uses; Router._vector computes the same faster)."""
    found = [i for i in map(vocabulary.get, text_features(text)) if i is not None]
    if not found:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    ids, counts = np.unique(np.array(found, dtype=np.int64), return_counts=True)
    values = (1.0 + np.log(counts)).astype(np.float32) * idf[ids]
    values /= np.sqrt(values @ values)
    return ids, values
