"""A text's meaning as one vector: the mean of its words' static vectors (pure, no I/O).

N-grams only know the words their training sources used; a prompt from elsewhere says the
same thing in other words. Static word vectors carry that similarity: "harm my neighbour"
and "hurt the guy next door" land close together although they share no n-gram. The
vectors are a model2vec distillation of all-MiniLM-L6-v2 (Apache-2.0): each of its 29,525
word pieces passed through the transformer once, reduced by PCA, and weighed down by how
common it is (SIF), so a mean of pieces is a sentence vector at the cost of a lookup.
`scripts/distill_word_vectors.py` rebuilds the table (it needs torch; the service does not).

The words are the ones routing.learned.features already splits (lowercase, numbers folded
to zeros), so the window is tokenised once for both. A word the table lacks is split into
word pieces by WordPiece's greedy longest match; a word with no split is left out.
"""

import hashlib
from collections.abc import Collection, Iterable, Sequence
from functools import lru_cache
from itertools import chain
from operator import itemgetter
from pathlib import Path

import numpy as np

_MAX_WORD_CHARS = 100  # BERT's own limit: a longer "word" is noise, not meaning
_CACHE_LIMIT = 50_000  # split words remembered per process, so an attack cannot grow it


class WordVectors:
    """Word-piece vectors with WordPiece splitting; `mean()` is the text's unit vector."""

    def __init__(self, pieces: Sequence[str], vectors: np.ndarray, digest: str = "") -> None:
        if len(pieces) != len(vectors):
            raise ValueError(f"{len(pieces)} word pieces for {len(vectors)} vectors")
        self.pieces = tuple(pieces)
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        # The table as stored (float16), when it is: the compiled kernel sums from it.
        self.half_vectors = np.ascontiguousarray(vectors) if vectors.dtype == np.float16 else None
        self.dimensions = int(self.vectors.shape[1])
        self.digest = digest or vectors_digest(vectors)
        self._starts = {p: i for i, p in enumerate(pieces) if not p.startswith("##")}
        self._suffixes = {p[2:]: i for i, p in enumerate(pieces) if p.startswith("##")}
        # Every word's pieces, whole words included, so a request looks each word up once.
        # One tuple per word: the compiled kernel counts a text's words by their tuples.
        self.memo: dict[str, tuple[int, ...]] = {p: (i,) for p, i in self._starts.items()}
        self._memo_limit = len(self.memo) + _CACHE_LIMIT

    def piece_ids(self, words: Iterable[str]) -> list[int]:
        """Return the word-piece ids of the words, in order."""
        return list(chain.from_iterable(self.pieces_per_word(list(words))))

    def pieces_by_word(self, words: Iterable[str]) -> tuple[list[int], list[int], list[str]]:
        """Return the piece ids, for each piece the index of its word among the distinct words,
        and the distinct words in order of first use (an explanation names words, not pieces)."""
        words = list(words)
        found: list[int] = []
        owners: list[int] = []
        index: dict[str, int] = {}
        for word, split in zip(words, self.pieces_per_word(words), strict=True):
            owner = index.setdefault(word, len(index))
            found.extend(split)
            owners.extend([owner] * len(split))
        return found, owners, list(index)

    def pieces_per_word(self, words: Collection[str]) -> Sequence[tuple[int, ...]]:
        """Return each word's piece ids (() for a word with no split)."""
        if len(words) > 1:
            try:  # every word seen before (the usual case): one call in compiled code
                return itemgetter(*words)(self.memo)
            except KeyError:
                pass
        return [self.word_pieces(word) for word in words]

    def mean(self, ids: Sequence[int]) -> np.ndarray:
        """Return the unit mean vector of the pieces (zeros when there are none)."""
        if not ids:
            return np.zeros(self.dimensions, dtype=np.float32)
        total = self.vectors[ids].sum(axis=0)
        length = float(np.sqrt(total @ total))
        return total / length if length else total

    def word_pieces(self, word: str) -> tuple[int, ...]:
        known = self.memo.get(word)
        if known is not None:
            return known
        pieces = self._greedy(word) if len(word) <= _MAX_WORD_CHARS else ()
        if len(self.memo) < self._memo_limit:
            self.memo[word] = pieces
        return pieces

    def _greedy(self, word: str) -> tuple[int, ...]:
        """WordPiece: the longest known start, then the longest known suffixes; () if stuck."""
        pieces, start, table = [], 0, self._starts
        while start < len(word):
            end = len(word)
            while end > start and word[start:end] not in table:
                end -= 1
            if end == start:
                return ()
            pieces.append(table[word[start:end]])
            start, table = end, self._suffixes
        return tuple(pieces)


VECTORS_DIR = Path(__file__).resolve().parent / "vectors"
REBUILD_VECTORS = "python scripts/distill_word_vectors.py"


class WordVectorsError(Exception):
    """The word-vector table is missing, unreadable or not the one an artifact was built on."""


def vectors_digest(vectors: np.ndarray) -> str:
    """Return the table's short digest: an artifact records it and refuses any other table."""
    return hashlib.sha256(np.ascontiguousarray(vectors).tobytes()).hexdigest()[:16]


@lru_cache(maxsize=2)
def load_word_vectors(name: str, digest: str = "") -> WordVectors:
    """Load routing/learned/vectors/<name>.npz (cached per process), checking its digest."""
    file = VECTORS_DIR / f"{name}.npz"
    try:
        with np.load(file, allow_pickle=False) as data:
            pieces = str(data["pieces"][()]).split("\n")
            vectors = data["vectors"]
    except Exception as error:
        raise WordVectorsError(
            f"Word vectors {file} cannot be read ({error}). They are committed with the code; "
            f"restore the file, or rebuild it: {REBUILD_VECTORS}."
        ) from error
    found = vectors_digest(vectors)
    if digest and found != digest:
        raise WordVectorsError(
            f"Word vectors {file} differ from the ones the router artifact was trained on "
            f"(digest {found}, expected {digest})."
        )
    return WordVectors(pieces, vectors, found)
