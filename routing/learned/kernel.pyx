# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""The learned router's scores, compiled: Router's numpy scoring (routing.learned.model) as one
call of plain loops over the same float32 tables.

A request's scores come from a few hundred feature rows. In numpy that is some forty small
calls of 2-10 µs each, a chat message's whole budget; here it is one call. `make install`
compiles this file (scripts/build_kernel.py). Without the compiled module Router scores with
numpy, and tests/routing/test_learned_kernel.py holds the two equal (floats to 1e-5: the sums
are added in another order).

What it computes, for one text's words (routing.learned.features.tokens):
- its n-gram features: each word's and each adjacent pair's vocabulary id, plus the shape
  features' ids, counted; weighed (1 + log tf) x idf and L2-normalised;
- each distinct word's share of the meaning vector (the unit sum of its word pieces' vectors,
  a word weighing as often as it occurs): its pieces' projected rows x count / norm;
- the parts' sums (9 class logits, safety, needs premium), the class probabilities, the best
  class, and the explanation's top contributions: toward the best class, and up and down
  for safety and needs premium (Router picks the direction).
Ties between equal contributions go to the n-gram with the lower id, then to the word used
first, as a stable sort of numpy's rows gives.
"""

from cpython.dict cimport PyDict_GetItem
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.object cimport PyObject
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from libc.math cimport exp, log, sqrt
from libc.stdlib cimport free, malloc
from libc.string cimport memset

cdef extern from *:
    """
    /* The one loop over many floats (a piece's 256 dimensions): plain C with restrict, so
       the compiler vectorises it. */
    static void add_weighted_rows(float *restrict total, const float *restrict table,
                                  Py_ssize_t width, const int *restrict rows,
                                  const float *restrict weights, Py_ssize_t count)
    {
        for (Py_ssize_t i = 0; i < count; i++) {
            const float *restrict row = table + (Py_ssize_t)rows[i] * width;
            const float weight = weights[i];
            for (Py_ssize_t d = 0; d < width; d++)
                total[d] += weight * row[d];
        }
    }
    """
    void add_weighted_rows(
        float* total, const float* table, Py_ssize_t width, const int* rows,
        const float* weights, Py_ssize_t count,
    ) noexcept nogil

cdef enum:
    CLASSES = 9
    SAFETY = 9
    PREMIUM = 10
    PARTS = 11  # a part's columns: the 9 classes, safety, needs premium
    IDF = 11  # a weights row's column after those
    TOP = 3  # contributions named per explanation (routing.learned.explanation.EXPLAIN_TOP)


cdef inline unsigned long long _spread(long long key) noexcept nogil:
    # Fibonacci hashing: the multiply spreads consecutive keys over a table's high bits.
    return <unsigned long long>key * 11400714819323198485ULL


cdef struct Pair:  # a bigram's slot: its key and feature id side by side, one cache line
    long long key
    int feature


cdef class Scorer:
    """One artifact's tables, ready for score(); built once per Router."""

    cdef dict words
    cdef const int[::1] unigram
    cdef long long width
    cdef long long unknown
    cdef Pair* pairs
    cdef int pair_shift
    cdef unsigned long long pair_mask
    cdef const float[:, ::1] weights
    cdef const float[::1] category_bias
    cdef float temperature
    cdef bint has_meaning
    cdef const float[:, ::1] vectors
    cdef const float[:, ::1] projection
    cdef tuple feature_names
    cdef str meaning_prefix
    cdef object contribution

    def __init__(
        self,
        *,
        dict words,
        unigram,
        pair_keys,
        pair_ids,
        weights,
        category_bias,
        float temperature,
        tuple feature_names,
        str meaning_prefix,
        contribution,
        vectors=None,
        projection=None,
    ):
        import numpy as np

        self.words = words  # word -> number; numbers index unigram; its last is "unknown"
        self.unigram = np.ascontiguousarray(unigram, dtype=np.int32)
        self.width = len(self.unigram)
        self.unknown = self.width - 1
        self.weights = weights
        self.category_bias = np.ascontiguousarray(category_bias, dtype=np.float32)
        self.temperature = temperature
        self.feature_names = feature_names
        self.meaning_prefix = meaning_prefix
        self.contribution = contribution
        self.has_meaning = vectors is not None
        if self.has_meaning:
            self.vectors = vectors
            self.projection = projection
        self._build_pairs(
            np.ascontiguousarray(pair_keys, dtype=np.int64),
            np.ascontiguousarray(pair_ids, dtype=np.int32),
        )

    cdef _build_pairs(self, const long long[::1] keys, const int[::1] ids):
        """The bigrams as an open-addressing table of pair keys (a x width + b), <= half full."""
        cdef int bits = 1
        while (1 << bits) < 2 * max(len(keys), 1):
            bits += 1
        self.pair_shift = 64 - bits
        self.pair_mask = (1ULL << bits) - 1
        self.pairs = <Pair*>malloc((1 << bits) * sizeof(Pair))
        if self.pairs is NULL:
            raise MemoryError()
        cdef Py_ssize_t i
        cdef unsigned long long slot
        for i in range(1 << bits):
            self.pairs[i].key = -1
        for i in range(len(keys)):
            slot = _spread(keys[i]) >> self.pair_shift
            while self.pairs[slot].key != -1:
                slot = (slot + 1) & self.pair_mask
            self.pairs[slot].key = keys[i]
            self.pairs[slot].feature = ids[i]

    def __dealloc__(self):
        free(self.pairs)

    cdef inline int _pair_feature(self, long long key) noexcept nogil:
        cdef unsigned long long slot = _spread(key) >> self.pair_shift
        while self.pairs[slot].key != key:
            if self.pairs[slot].key == -1:
                return -1
            slot = (slot + 1) & self.pair_mask
        return self.pairs[slot].feature

    def score(self, list words, list shape_ids, list counts, split, list distinct, bint premium):
        """Return (sums, probabilities, best, category, safety up, safety down, premium up,
        premium down) for the words (tokens(text)), the shape features' ids, and for the
        meaning the distinct words with their counts and word pieces (split, in that order);
        premium=False leaves needs premium's contributions empty."""
        cdef Py_ssize_t n = PyList_GET_SIZE(words)
        cdef Py_ssize_t most = 2 * n + PyList_GET_SIZE(shape_ids) + 1
        cdef Py_ssize_t words_count = PyList_GET_SIZE(counts) if self.has_meaning else 0
        cdef Py_ssize_t slots = 16
        while slots < 2 * most:
            slots *= 2
        # One allocation for the request's scratch: word numbers, features found, their
        # counts, a small table that counts them, and later the parts and a ranking column.
        cdef long long* numbers = <long long*>malloc(n * sizeof(long long) + 1)
        cdef int* found = <int*>malloc(most * sizeof(int))
        cdef int* times = <int*>malloc(most * sizeof(int))
        cdef int* seen = <int*>malloc(slots * sizeof(int))
        cdef float* parts = NULL
        cdef float* ranked = NULL
        cdef Py_ssize_t count, rows, i
        cdef int best
        try:
            if numbers is NULL or found is NULL or times is NULL or seen is NULL:
                raise MemoryError()
            count = self._features(words, shape_ids, numbers, found, times, seen, slots - 1)
            rows = count + words_count
            parts = <float*>malloc((rows + 1) * PARTS * sizeof(float))
            ranked = <float*>malloc((rows + 1) * sizeof(float))
            if parts is NULL or ranked is NULL:
                raise MemoryError()
            self._ngram_parts(found, times, count, parts)
            if words_count:
                self._meaning_parts(counts, split, parts + count * PARTS)
            sums = self._sums(parts, rows)
            probabilities, best = self._probabilities(sums)
            for i in range(rows):  # a part's pull toward the best class, against its mean pull
                ranked[i] = parts[i * PARTS + best] - _class_sum(parts + i * PARTS) * <float>(1.0 / CLASSES)
            category = self._top(ranked, 1, rows, 1, found, count, distinct)
            safety_up = self._top(parts + SAFETY, PARTS, rows, 1, found, count, distinct)
            safety_down = self._top(parts + SAFETY, PARTS, rows, -1, found, count, distinct)
            premium_up = premium_down = ()
            if premium:
                premium_up = self._top(parts + PREMIUM, PARTS, rows, 1, found, count, distinct)
                premium_down = self._top(parts + PREMIUM, PARTS, rows, -1, found, count, distinct)
            return sums, probabilities, best, category, safety_up, safety_down, premium_up, premium_down
        finally:
            free(numbers)
            free(found)
            free(times)
            free(seen)
            free(parts)
            free(ranked)

    cdef Py_ssize_t _features(
        self, list words, list shape_ids, long long* numbers, int* found, int* times, int* seen,
        Py_ssize_t mask,
    ) except -1:
        """Write the distinct feature ids (in order of first use) and their counts to found
        and times; return how many there are."""
        cdef Py_ssize_t n = PyList_GET_SIZE(words), i, count = 0
        cdef PyObject* number
        cdef int feature
        cdef long long a, b
        memset(seen, 0xFF, (mask + 1) * sizeof(int))  # -1: an empty slot
        for i in range(n):
            number = PyDict_GetItem(self.words, <object>PyList_GET_ITEM(words, i))
            numbers[i] = self.unknown if number is NULL else <long long><object>number
            feature = self.unigram[numbers[i]]
            if feature >= 0:
                count = _counted(feature, found, times, count, seen, mask)
        for i in range(n - 1):
            a, b = numbers[i], numbers[i + 1]
            if a != self.unknown and b != self.unknown:
                feature = self._pair_feature(a * self.width + b)
                if feature >= 0:
                    count = _counted(feature, found, times, count, seen, mask)
        for i in range(PyList_GET_SIZE(shape_ids)):
            feature = <int><object>PyList_GET_ITEM(shape_ids, i)
            count = _counted(feature, found, times, count, seen, mask)
        return count

    cdef void _ngram_parts(self, const int* ids, const int* times, Py_ssize_t count, float* parts):
        cdef Py_ssize_t k, c
        cdef const float* row
        cdef float value, norm
        cdef double squares = 0.0
        for k in range(count):
            row = &self.weights[ids[k], 0]
            value = <float>(1.0 + log(<double>times[k])) * row[IDF]
            parts[k * PARTS] = value  # the value, for now: the norm needs them all first
            squares += <double>value * value
        norm = <float>sqrt(squares)
        for k in range(count):
            row = &self.weights[ids[k], 0]
            value = parts[k * PARTS] / norm
            for c in range(PARTS):
                parts[k * PARTS + c] = row[c] * value

    cdef int _meaning_parts(self, list counts, split, float* shares) except -1:
        """Write each distinct word's share of the meaning vector's pull (zeros for needs
        premium) to its row of shares."""
        cdef Py_ssize_t words_count = PyList_GET_SIZE(counts)
        cdef Py_ssize_t dimensions = self.vectors.shape[1]
        cdef Py_ssize_t j, p, c, pieces = 0, total_pieces = 0
        cdef tuple word_pieces
        cdef tuple by_word = split if type(split) is tuple else tuple(split)
        for j in range(words_count):
            total_pieces += PyTuple_GET_SIZE(<tuple>PyTuple_GET_ITEM(by_word, j))
        memset(shares, 0, words_count * PARTS * sizeof(float))
        if not total_pieces:
            return 0
        # Each piece's row in the tables, its word and its weight (the word's count).
        cdef int* piece_rows = <int*>malloc(total_pieces * sizeof(int))
        cdef int* owners = <int*>malloc(total_pieces * sizeof(int))
        cdef float* repeats = <float*>malloc(total_pieces * sizeof(float))
        cdef float* total = <float*>malloc(dimensions * sizeof(float))
        cdef float norm, scale
        cdef double squares = 0.0
        cdef const float* projected
        try:
            if piece_rows is NULL or owners is NULL or repeats is NULL or total is NULL:
                raise MemoryError()
            for j in range(words_count):
                word_pieces = <tuple>PyTuple_GET_ITEM(by_word, j)
                for p in range(PyTuple_GET_SIZE(word_pieces)):
                    piece_rows[pieces] = <int><object>PyTuple_GET_ITEM(word_pieces, p)
                    owners[pieces] = j
                    repeats[pieces] = <float><object>PyList_GET_ITEM(counts, j)
                    pieces += 1
            memset(total, 0, dimensions * sizeof(float))
            add_weighted_rows(total, &self.vectors[0, 0], dimensions, piece_rows, repeats, pieces)
            for c in range(dimensions):
                squares += <double>total[c] * total[c]
            norm = <float>sqrt(squares) if squares else <float>1.0
            for p in range(pieces):
                scale = repeats[p] / norm
                projected = &self.projection[piece_rows[p], 0]
                for c in range(PREMIUM):
                    shares[owners[p] * PARTS + c] += projected[c] * scale
            return 0
        finally:
            free(piece_rows)
            free(owners)
            free(repeats)
            free(total)

    cdef tuple _sums(self, const float* parts, Py_ssize_t rows):
        cdef double column[PARTS]
        cdef Py_ssize_t i, c
        for c in range(PARTS):
            column[c] = 0.0
        for i in range(rows):
            for c in range(PARTS):
                column[c] += parts[i * PARTS + c]
        return tuple([<float>column[c] for c in range(PARTS)])

    cdef tuple _probabilities(self, tuple sums):
        """The softmax of the class logits (float32, as numpy computes it) and the best class."""
        cdef float logits[CLASSES]
        cdef float highest = -1e38, total = 0.0, best_value = -1.0
        cdef int c, best = 0
        for c in range(CLASSES):
            logits[c] = (<float>sums[c] + self.category_bias[c]) / self.temperature
            if logits[c] > highest:
                highest = logits[c]
        for c in range(CLASSES):
            logits[c] = <float>exp(logits[c] - highest)
            total += logits[c]
        for c in range(CLASSES):
            logits[c] = logits[c] / total
            if logits[c] > best_value:
                best_value, best = logits[c], c
        return [<double>logits[c] for c in range(CLASSES)], best

    cdef tuple _top(
        self, const float* values, Py_ssize_t stride, Py_ssize_t rows, float sign,
        const int* ids, Py_ssize_t count, list distinct,
    ):
        """The TOP rows whose sign x values[row * stride] are largest and positive, largest
        first, each named with its value (not times sign)."""
        cdef Py_ssize_t best[TOP]
        cdef float top[TOP]
        cdef int kept = 0, k
        cdef Py_ssize_t i
        cdef float value
        for i in range(rows):
            value = sign * values[i * stride]
            if value <= 0 or (kept == TOP and not _ahead(value, i, top[TOP - 1], best[TOP - 1], ids, count)):
                continue
            k = kept if kept < TOP else TOP - 1  # the free slot, or the last one's (dropped)
            while k > 0 and _ahead(value, i, top[k - 1], best[k - 1], ids, count):
                top[k], best[k] = top[k - 1], best[k - 1]
                k -= 1
            top[k], best[k] = value, i
            if kept < TOP:
                kept += 1
        return tuple([
            self._named(best[k], sign * top[k], ids, count, distinct) for k in range(kept)
        ])

    cdef object _named(
        self, Py_ssize_t row, float weight, const int* ids, Py_ssize_t count, list distinct
    ):
        if row < count:
            name = self.feature_names[ids[row]]
        else:
            name = self.meaning_prefix + <str>PyList_GET_ITEM(distinct, row - count)
        # tuple.__new__ builds the named tuple in C, without its Python __new__.
        return tuple.__new__(self.contribution, (name, <double>weight))


cdef inline Py_ssize_t _counted(
    int feature, int* found, int* times, Py_ssize_t count, int* seen, Py_ssize_t mask
) noexcept nogil:
    """Count one occurrence of a feature (seen: slots of indexes into found); return how
    many distinct features there are now."""
    cdef Py_ssize_t slot = (_spread(feature) >> 32) & mask
    while seen[slot] != -1:
        if found[seen[slot]] == feature:
            times[seen[slot]] += 1
            return count
        slot = (slot + 1) & mask
    seen[slot] = count
    found[count] = feature
    times[count] = 1
    return count + 1


cdef inline bint _ahead(
    float value, Py_ssize_t row, float other, Py_ssize_t other_row, const int* ids,
    Py_ssize_t count,
) noexcept nogil:
    """Does a row rank before another: a larger value, or on a tie an n-gram with a lower id
    (n-grams before words, words in order of first use)."""
    if value != other:
        return value > other
    if row < count and other_row < count:
        return ids[row] < ids[other_row]
    return row < other_row


cdef inline float _class_sum(const float* part) noexcept nogil:
    cdef float total = 0.0
    cdef int c
    for c in range(CLASSES):
        total += part[c]
    return total
