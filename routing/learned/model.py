"""The trained router: three linear models over one vocabulary, loaded once, predicted purely.

- category: the 9 categories, softmax with a temperature fitted on held-out rows;
- safety: unsafe vs benign, with the threshold chosen at training time;
- needs premium: the probability that the cheap model's answer is worse than the premium
  one's (Platt-scaled on held-out rows); the engine reads it as complexity = 10 x p.

Features are the named n-grams of routing.learned.features, weighted (1 + log tf) x idf and
L2-normalised, and the text's meaning vector (routing.learned.meaning: the unit mean of its
words' static vectors), which carries what n-grams miss in a prompt worded unlike any training
source. Each model's score is a sum of per-feature contributions (n-grams, and each word's share
of the meaning vector's pull): those are the explanation. Prediction reads the few hundred
features a window holds, no I/O: in one call of the compiled kernel (routing.learned.kernel,
built by `make install`), or in numpy where it is not built (the reference it is tested on).
An artifact is one .npz file (no pickles) written by routing.learned.artifact_writer when
routing.learned.training has fitted it.

Here: the Router, its predict() and load_router(). A text's feature ids and weights come from
routing.learned.vectorizer; routing.learned.explanation names the top contributions.
"""

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from itertools import chain
from pathlib import Path
from typing import NamedTuple

import numpy as np

from routing.complexity import ComplexityEstimate
from routing.learned.explanation import Contribution, premium_contributions, top_contributions
from routing.learned.features import (
    FEATURES_VERSION,
    MEANING_PREFIX,
    SIGNAL_NAMES,
    ascii_window,
    shape_features,
    signal_values,
    tokens,
)
from routing.learned.meaning import WordVectors, WordVectorsError, load_word_vectors
from routing.learned.vectorizer import NgramLookup, feature_hash

try:  # compiled by `make install` (scripts/build_kernel.py); numpy computes the same, slower
    from routing.learned.kernel import Scorer as CompiledScorer
except ImportError:
    CompiledScorer = None

ARTIFACT_FORMAT = 1
_CLASSES, _SAFETY, _PREMIUM = 9, 9, 10  # columns of Router.weights
_PARTS = 11  # a score part's columns: the 9 classes, safety, needs premium
_IDF = 11  # Router.weights' column after those: the feature's idf
_ROW = 16  # floats in a Router.weights row: 64 bytes, one cache line
_NO_IDS = np.zeros(0, dtype=np.int64)
_NO_VALUES = np.zeros(0, dtype=np.float32)
_NO_ROWS = np.zeros((0, _ROW), dtype=np.float32)
_SHARE_COLUMNS = np.arange(_PREMIUM)  # the meaning's columns of a part: classes and safety
REBUILD_COMMAND = "python manage.py train_router"
BUILD_KERNEL_COMMAND = "python scripts/build_kernel.py"


class Scores(NamedTuple):
    """One text's scores: the parts' sums (9 class logits, safety, needs premium), the class
    probabilities, the best class, and the top contributions toward the best class and, up
    and down, to safety and to needs premium (n-grams; empty when it reads none)."""

    sums: tuple[float, ...]
    probabilities: list[float]
    best: int
    category: tuple[Contribution, ...]
    safety_up: tuple[Contribution, ...]
    safety_down: tuple[Contribution, ...]
    premium_up: tuple[Contribution, ...]
    premium_down: tuple[Contribution, ...]


class ArtifactError(Exception):
    """The router artifact is missing, unreadable or made for other code."""


@dataclass(frozen=True)
class RouterPrediction:
    category: str
    category_probability: float
    probabilities: Mapping[str, float]
    unsafe_probability: float
    unsafe: bool
    needs_premium: float  # calibrated probability in [0, 1]
    category_features: tuple[Contribution, ...]
    safety_features: tuple[Contribution, ...]
    premium_features: tuple[Contribution, ...]
    estimate: ComplexityEstimate  # the hand-made signals the needs-premium model reads

    def explanation(self) -> dict:
        """Return the JSON-ready top contributions of each model."""
        return {
            "category": [c.as_dict() for c in self.category_features],
            "safety": [c.as_dict() for c in self.safety_features],
            "needs_premium": [c.as_dict() for c in self.premium_features],
        }


@dataclass(frozen=True, eq=False)
class Router:
    artifact_id: str
    path: str
    card: Mapping  # training metadata: data, sizes, metrics, date
    classes: tuple[str, ...]
    vocabulary: Mapping[str, int]
    feature_names: tuple[str, ...]
    lookup: NgramLookup
    idf: np.ndarray
    category_weights: np.ndarray  # (features, classes)
    category_bias: np.ndarray
    category_temperature: float
    safety_weights: np.ndarray
    safety_bias: float
    safety_threshold: float
    premium_weights: np.ndarray
    premium_signal_weights: np.ndarray  # over SIGNAL_NAMES, standardised values
    signal_mean: np.ndarray
    signal_scale: np.ndarray
    premium_bias: float
    premium_scale: tuple[float, float]  # Platt: p = sigmoid(a * score + b)
    premium_uses_ngrams: bool = True
    # The meaning vector's weights for the 9 classes and safety (needs premium reads none).
    meaning: WordVectors | None = None
    meaning_weights: np.ndarray | None = None  # (dimensions, 10)
    weights: np.ndarray = field(init=False, repr=False)  # (features, _ROW)
    kernel: "CompiledScorer | None" = field(init=False, repr=False)  # None: not compiled

    def __post_init__(self) -> None:
        # One matrix: a request costs one gather and one product for all three models. A
        # row is one cache line (11 weights, the idf, padding): a request gathers a few
        # hundred rows spread over megabytes, so each row costs one cache miss, not two.
        columns = [
            self.category_weights,
            self.safety_weights[:, None],
            self.premium_weights[:, None],
            self.idf[:, None],
        ]
        object.__setattr__(self, "weights", _cache_line_rows(np.hstack(columns)))
        object.__setattr__(self, "kernel", self._compiled_scorer())

    def _compiled_scorer(self, *, half_vectors: bool = True, **options) -> "CompiledScorer | None":
        """The kernel over this router's tables. half_vectors=False (tests) reads the word
        vectors as float32 instead of as stored, float16 (the same sums, twice the bytes);
        options: new_words bounds the words first seen at run time that it keeps."""
        if CompiledScorer is None:
            return None
        lookup, meaning = self.lookup, self.meaning
        return CompiledScorer(
            words=lookup.words,
            unigram=lookup.unigram,
            pair_keys=lookup.pair_keys,
            pair_ids=lookup.pair_ids,
            weights=self.weights,
            category_bias=self.category_bias,
            temperature=self.category_temperature,
            feature_names=self.feature_names,
            meaning_prefix=MEANING_PREFIX,
            contribution=Contribution,
            vectors=None if meaning is None else meaning.vectors,
            projection=None if meaning is None else self._meaning_projection,
            split=None if meaning is None else meaning.memo,
            word_pieces=None if meaning is None else meaning.word_pieces,
            half_vectors=meaning.half_vectors if meaning is not None and half_vectors else None,
            **options,
        )

    def predict(self, text: str, *, category_known: bool = False) -> RouterPrediction:
        """Return the three models' outputs and their top features for one text.

        With category_known (the caller gave it) and a needs-premium model that reads no
        n-grams, the text's features are skipped: only needs premium is meaningful then."""
        read_text = not (category_known and not self.premium_uses_ngrams)
        scores = self._scores(text, read_text=read_text)
        unsafe = _sigmoid(scores.sums[_SAFETY] + self.safety_bias)
        raw, estimate = signal_values(text)
        needs_premium, signal_parts = self._needs_premium(scores.sums[_PREMIUM], raw)
        best = scores.best
        return RouterPrediction(
            category=self.classes[best],
            category_probability=scores.probabilities[best],
            probabilities=dict(zip(self.classes, scores.probabilities, strict=True)),
            unsafe_probability=unsafe,
            unsafe=unsafe >= self.safety_threshold,
            needs_premium=needs_premium,
            category_features=scores.category,
            safety_features=scores.safety_up if unsafe >= 0.5 else scores.safety_down,
            premium_features=premium_contributions(
                scores.premium_up if needs_premium >= 0.5 else scores.premium_down,
                signal_parts,
                needs_premium,
            ),
            estimate=estimate,
        )

    def _scores(self, text: str, *, read_text: bool) -> Scores:
        """Return the text's scores: the compiled kernel's, or numpy's where it is not built."""
        kernel = self.kernel
        if kernel is None:
            words = tokens(text) if read_text else []
            times = Counter(words) if self.meaning is not None else {}
            return self._numpy_scores(text, words, times, read_text=read_text)
        if not read_text:
            return Scores(*kernel.score([], [], self.premium_uses_ngrams))
        shape_ids = [i for i in map(self.vocabulary.get, shape_features(text)) if i is not None]
        window = ascii_window(text) if kernel.reads_text else None
        if window is not None:  # most prompts: the kernel reads the words from the characters
            return Scores(*kernel.score_text(window, shape_ids, self.premium_uses_ngrams))
        return Scores(*kernel.score(tokens(text), shape_ids, self.premium_uses_ngrams))

    def _numpy_scores(
        self, text: str, words: list[str], times: Mapping[str, int], *, read_text: bool
    ) -> Scores:
        """The scores in numpy: the reference the compiled kernel is held equal to."""
        ids, values, rows = _NO_IDS, _NO_VALUES, _NO_ROWS
        if read_text:
            ids, values, rows = self._vector_rows(text, words)
        # One row per part of the scores: each n-gram's (9 class weights, safety, needs
        # premium) times its value, then each distinct word's share of the meaning vector.
        count = len(ids)
        parts = np.zeros((count + len(times), _PARTS), dtype=np.float32)
        np.multiply(rows[:, :_PARTS], values[:, None], out=parts[:count])
        if times:
            self._meaning_shares(times, parts[count:])
        meaning_words, feature_names = list(times), self.feature_names

        def names(i: int) -> str:  # only the few explained features are named
            if i < count:
                return feature_names[ids[i]]
            return MEANING_PREFIX + meaning_words[i - count]

        sums = parts.sum(axis=0)
        logits = (sums[:_CLASSES] + self.category_bias) / self.category_temperature
        probabilities = np.exp(logits - logits.max())
        probabilities /= probabilities.sum()
        best = int(probabilities.argmax())
        # A feature's pull toward the chosen class, against its mean pull over all classes.
        category_parts = parts[:, best] - parts[:, :_CLASSES].sum(axis=1) * (1 / _CLASSES)
        safety, premium = parts[:, _SAFETY], parts[:, _PREMIUM]
        ngram_premium = self.premium_uses_ngrams
        return Scores(
            sums=tuple(sums.tolist()),
            probabilities=probabilities.tolist(),
            best=best,
            category=top_contributions(category_parts, category_parts, names),
            safety_up=top_contributions(safety, safety, names),
            safety_down=top_contributions(-safety, safety, names),
            premium_up=top_contributions(premium, premium, names) if ngram_premium else (),
            premium_down=top_contributions(-premium, premium, names) if ngram_premium else (),
        )

    def hashed_features(self, text: str) -> dict:
        """Return the text as the models see it, without the text: each known n-gram as a
        short hash with its weight, and the signals. Kept with a shadow verdict so the
        needs-premium model can be refitted on our own traffic (train_router --with-verdicts)."""
        ids, values = self._vector(text)
        raw, _ = signal_values(text)
        return {
            "artifact": self.artifact_id,
            "features": FEATURES_VERSION,
            "ngrams": [
                [feature_hash(self.feature_names[i]), round(float(v), 5)]
                for i, v in zip(ids.tolist(), values.tolist(), strict=True)
            ],
            "signals": [round(float(v), 5) for v in raw],
        }

    def needs_premium_from(self, ngrams: Mapping[str, float], signals: Sequence[float]) -> float:
        """Return needs premium for a request known only by its stored hashed features (a
        verdict): the n-grams this vocabulary lacks count as absent."""
        known = {self._hash_columns[d]: w for d, w in ngrams.items() if d in self._hash_columns}
        ids = list(known)
        ngram_score = float(np.dot(self.premium_weights[ids], list(known.values()))) if ids else 0.0
        raw = [0.0] * len(SIGNAL_NAMES)
        raw[: len(signals)] = signals[: len(SIGNAL_NAMES)]
        return self._needs_premium(ngram_score, raw)[0]

    def _needs_premium(self, ngram_score: float, raw_signals) -> tuple[float, list[float]]:
        """Return the calibrated probability and each signal's share of the score."""
        # Ten numbers: plain floats cost a tenth of numpy's calls on them.
        signal_parts = [
            (value - mean) / scale * weight
            for value, mean, scale, weight in zip(raw_signals, *self._signal_terms, strict=True)
        ]
        score = ngram_score + sum(signal_parts) + self.premium_bias
        a, b = self.premium_scale
        return _sigmoid(a * score + b), signal_parts

    @cached_property
    def _signal_terms(self) -> tuple[list[float], list[float], list[float]]:
        """Each signal's mean, scale and weight, as floats."""
        return (
            self.signal_mean.tolist(),
            self.signal_scale.tolist(),
            self.premium_signal_weights.tolist(),
        )

    @cached_property
    def _hash_columns(self) -> dict[str, int]:
        return {feature_hash(name): i for i, name in enumerate(self.feature_names)}

    def _meaning_parts(self, words: list[str]) -> tuple[np.ndarray, list[str]]:
        """Return each distinct word's share of the meaning vector's logits (the rows sum to
        the meaning vector times its weights) and the words' feature names."""
        times = Counter(words)
        shares = np.zeros((len(times), _PARTS), dtype=np.float32)
        self._meaning_shares(times, shares)
        return shares, [MEANING_PREFIX + word for word in times]

    def _meaning_shares(self, times: Mapping[str, int], shares: np.ndarray) -> None:
        """Write each distinct word's share into its row of `shares` (zeros, C-contiguous, one
        row a word, in the order of `times`): a word weighs as often as it occurs."""
        split = self.meaning.pieces_per_word(times)
        pieces = np.fromiter(chain.from_iterable(split), dtype=np.intp)
        if not len(pieces):
            return
        repeats = np.fromiter(times.values(), dtype=np.float32, count=len(times))
        # Most messages: one piece per word, or none (an emoji); then a word's share is its
        # piece's, written to its row, with no sums per word.
        one_each = len(pieces) + split.count(()) == len(times)
        owner = None
        if not one_each:
            owner = np.repeat(np.arange(len(times)), list(map(len, split)))
        elif len(pieces) < len(times):
            owner = np.array([i for i, word_pieces in enumerate(split) if word_pieces])
        if owner is not None:
            repeats = repeats.take(owner)
        total = repeats @ self.meaning.vectors.take(pieces, axis=0)
        scale = repeats / (float(np.sqrt(total @ total)) or 1.0)
        projected = self._meaning_projection.take(pieces, axis=0)[:, :_PREMIUM]
        piece_shares = projected * scale[:, None]
        if owner is None:
            shares[:, :_PREMIUM] = piece_shares
        elif one_each:
            shares[owner, :_PREMIUM] = piece_shares
        elif len(pieces) <= 32:
            np.add.at(shares[:, :_PREMIUM], owner, piece_shares)
        else:  # the same sums in the same order on the flat view: half the cost on long texts
            cells = (owner[:, None] * _PARTS + _SHARE_COLUMNS).ravel()
            np.add.at(shares.reshape(-1), cells, piece_shares.ravel())

    @cached_property
    def _meaning_projection(self) -> np.ndarray:
        """Each word piece's vector times the meaning weights: a request gathers 10 numbers
        per piece for its explanation instead of multiplying 256 (a row a cache line)."""
        return _cache_line_rows(self.meaning.vectors @ self.meaning_weights)

    def _vector(self, text: str, words: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        ids, values, _ = self._vector_rows(text, tokens(text) if words is None else words)
        return ids, values

    def _vector_rows(self, text: str, words: list[str]) -> tuple[np.ndarray, ...]:
        """Return the known feature ids, their values and their rows of self.weights."""
        ids, counts = self.lookup.counted_ids(text, words)
        if not len(ids):
            return _NO_IDS, _NO_VALUES, _NO_ROWS
        # take(): the same gather as fancy indexing, at a third of its cost on narrow rows.
        rows = self.weights.take(ids, axis=0)
        values = (1.0 + np.log(counts)).astype(np.float32) * rows[:, _IDF]
        values /= np.sqrt(values @ values)
        return ids, values, rows


def _cache_line_rows(matrix: np.ndarray) -> np.ndarray:
    """Return the matrix as float32 rows of _ROW floats (zero-padded), each starting on a
    64-byte boundary."""
    size = len(matrix) * _ROW
    buffer = np.zeros(size + _ROW, dtype=np.float32)
    start = (-buffer.ctypes.data % 64) // 4
    rows = buffer[start : start + size].reshape(len(matrix), _ROW)
    rows[:, : matrix.shape[1]] = matrix
    return rows


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x > -700 else 0.0


@lru_cache(maxsize=4)
def load_router(path: str) -> Router:
    """Load and check one artifact (cached per path); ArtifactError names the fix."""
    file = Path(path)
    if not file.is_file():
        raise ArtifactError(f"Router artifact {file} not found. Rebuild it: {REBUILD_COMMAND}.")
    try:
        with np.load(file, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        card = json.loads(str(arrays["card"]))
    except Exception as error:
        raise ArtifactError(
            f"Router artifact {file} is unreadable ({error}). Rebuild it: {REBUILD_COMMAND}."
        ) from error
    if card.get("format") != ARTIFACT_FORMAT or card.get("features") != FEATURES_VERSION:
        raise ArtifactError(
            f"Router artifact {file} was built for format {card.get('format')} / features "
            f"{card.get('features')!r}; this code reads format {ARTIFACT_FORMAT} / features "
            f"{FEATURES_VERSION!r}. Rebuild it: {REBUILD_COMMAND}."
        )
    names = tuple(str(arrays["feature_names"][()]).split("\n"))
    vocabulary = {name: i for i, name in enumerate(names)}
    classes = tuple(card["classes"])
    size = len(names)
    shapes = {
        "idf": (size,),
        "category_weights": (size, len(classes)),
        "category_bias": (len(classes),),
        "safety_weights": (size,),
        "premium_weights": (size,),
        "premium_signal_weights": (len(SIGNAL_NAMES),),
        "signal_mean": (len(SIGNAL_NAMES),),
        "signal_scale": (len(SIGNAL_NAMES),),
    }
    meaning, meaning_weights = None, None
    if card.get("meaning"):
        try:
            meaning = load_word_vectors(card["meaning"]["table"], card["meaning"]["digest"])
        except WordVectorsError as error:
            raise ArtifactError(f"Router artifact {file}: {error}") from error
        meaning_weights = arrays.get("meaning_weights")
        shapes["meaning_weights"] = (meaning.dimensions, _PREMIUM)
    for name, shape in shapes.items():
        if name not in arrays or arrays[name].shape != shape:
            raise ArtifactError(
                f"Router artifact {file}: {name} has shape "
                f"{arrays[name].shape if name in arrays else None}, expected "
                f"{shape}. Rebuild it: {REBUILD_COMMAND}."
            )
    return Router(
        artifact_id=card["artifact_id"],
        path=str(file),
        card=card,
        classes=classes,
        vocabulary=vocabulary,
        feature_names=names,
        lookup=NgramLookup(vocabulary),
        idf=arrays["idf"].astype(np.float32),
        category_weights=arrays["category_weights"].astype(np.float32),
        category_bias=arrays["category_bias"].astype(np.float32),
        category_temperature=float(card["category_temperature"]),
        safety_weights=arrays["safety_weights"].astype(np.float32),
        safety_bias=float(card["safety_bias"]),
        safety_threshold=float(card["safety_threshold"]),
        premium_weights=arrays["premium_weights"].astype(np.float32),
        premium_signal_weights=arrays["premium_signal_weights"].astype(np.float32),
        signal_mean=arrays["signal_mean"].astype(np.float32),
        signal_scale=arrays["signal_scale"].astype(np.float32),
        premium_bias=float(card["premium_bias"]),
        premium_scale=tuple(card["premium_scale"]),
        premium_uses_ngrams=bool(np.any(arrays["premium_weights"])),
        meaning=meaning,
        meaning_weights=None if meaning_weights is None else meaning_weights.astype(np.float32),
    )
