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
from cpython.unicode cimport PyUnicode_DATA, PyUnicode_FromStringAndSize
from libc.math cimport exp, log, sqrt
from libc.stdlib cimport free, malloc
from libc.string cimport memset

cdef extern from "Python.h":
    bint PyUnicode_IS_COMPACT_ASCII(object)

cdef extern from *:
    """
    /* The one loop over many floats (a piece's 256 dimensions): plain C with restrict, so
       the compiler vectorises it. */
    static void add_weighted_rows(float *restrict total, const float *restrict table,
                                  Py_ssize_t width, const int *restrict rows,
                                  const float *restrict weights, Py_ssize_t count)
    {
        for (Py_ssize_t i = 0; i < count; i++) {
            if (i + 2 < count) {  /* the rows are far apart: ask for one two rows ahead */
                const char *ahead = (const char *)(table + (Py_ssize_t)rows[i + 2] * width);
                for (Py_ssize_t b = 0; b < width * 4; b += 64)
                    __builtin_prefetch(ahead + b);
            }
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


cdef struct Scratch:  # one request's working memory, freed by _release
    long long* numbers  # each word's number (the n-gram vocabulary's)
    int* found  # the distinct features' ids, in order of first use
    int* times  # how often each occurs
    int* seen  # a small open-addressing table: slot -> index into found (or pieces)
    PyObject** pieces  # the distinct words' pieces (borrowed: the memo holds them)
    int* word_times  # how often each distinct word occurs
    int* first_use  # where it first occurs in the words
    float* parts  # a row of PARTS floats per feature, then per distinct word
    float* ranked  # one column to rank


cdef int _allocate(Scratch* scratch, Py_ssize_t n, Py_ssize_t most, Py_ssize_t slots) except -1:
    scratch.numbers = <long long*>malloc(n * sizeof(long long) + 1)
    scratch.found = <int*>malloc(most * sizeof(int))
    scratch.times = <int*>malloc(most * sizeof(int))
    scratch.seen = <int*>malloc(slots * sizeof(int))
    scratch.pieces = <PyObject**>malloc(n * sizeof(PyObject*) + 1)
    scratch.word_times = <int*>malloc(n * sizeof(int) + 1)
    scratch.first_use = <int*>malloc(n * sizeof(int) + 1)
    if (
        scratch.numbers is NULL or scratch.found is NULL or scratch.times is NULL
        or scratch.seen is NULL or scratch.pieces is NULL or scratch.word_times is NULL
        or scratch.first_use is NULL
    ):
        raise MemoryError()
    return 0


cdef void _release(Scratch* scratch):
    free(scratch.numbers)
    free(scratch.found)
    free(scratch.times)
    free(scratch.seen)
    free(scratch.pieces)
    free(scratch.word_times)
    free(scratch.first_use)
    free(scratch.parts)
    free(scratch.ranked)


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
    cdef dict split  # word -> its word pieces' ids (WordVectors' memo of every word's split)
    cdef object word_pieces  # word -> its pieces, for a word not in split yet (memoised there)
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
        dict split=None,
        word_pieces=None,
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
            self.split = split
            self.word_pieces = word_pieces
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

    def score(self, list words, list shape_ids, bint premium):
        """Return (sums, probabilities, best, category, safety up, safety down, premium up,
        premium down) for the words (tokens(text)) and the shape features' ids; premium=False
        leaves needs premium's contributions empty."""
        cdef Py_ssize_t n = PyList_GET_SIZE(words)
        cdef Py_ssize_t most = 2 * n + PyList_GET_SIZE(shape_ids) + 1
        cdef Py_ssize_t slots = 16
        while slots < 2 * most:
            slots *= 2
        cdef Scratch scratch
        cdef Py_ssize_t count, words_count, rows, i
        cdef int best
        cdef dict unmemoised = {}  # pieces of words past the memo's bound, for this call
        memset(&scratch, 0, sizeof(Scratch))
        try:
            _allocate(&scratch, n, most, slots)
            count = self._features(words, shape_ids, &scratch, slots - 1)
            words_count = 0
            if self.has_meaning:
                words_count = self._distinct_words(words, &scratch, slots - 1, unmemoised)
            rows = count + words_count
            scratch.parts = <float*>malloc((rows + 1) * PARTS * sizeof(float))
            scratch.ranked = <float*>malloc((rows + 1) * sizeof(float))
            if scratch.parts is NULL or scratch.ranked is NULL:
                raise MemoryError()
            self._ngram_parts(scratch.found, scratch.times, count, scratch.parts)
            if words_count:
                self._meaning_parts(&scratch, words_count, scratch.parts + count * PARTS)
            sums = self._sums(scratch.parts, rows)
            probabilities, best = self._probabilities(sums)
            parts, ranked = scratch.parts, scratch.ranked
            for i in range(rows):  # a part's pull toward the best class, against its mean pull
                ranked[i] = parts[i * PARTS + best] - _class_sum(parts + i * PARTS) * <float>(1.0 / CLASSES)
            category = self._top(ranked, 1, rows, 1, &scratch, count, words)
            safety_up = self._top(parts + SAFETY, PARTS, rows, 1, &scratch, count, words)
            safety_down = self._top(parts + SAFETY, PARTS, rows, -1, &scratch, count, words)
            premium_up = premium_down = ()
            if premium:
                premium_up = self._top(parts + PREMIUM, PARTS, rows, 1, &scratch, count, words)
                premium_down = self._top(parts + PREMIUM, PARTS, rows, -1, &scratch, count, words)
            return sums, probabilities, best, category, safety_up, safety_down, premium_up, premium_down
        finally:
            _release(&scratch)

    cdef Py_ssize_t _features(
        self, list words, list shape_ids, Scratch* scratch, Py_ssize_t mask
    ) except -1:
        """Write the distinct feature ids (in order of first use) and their counts to
        scratch.found and scratch.times; return how many there are."""
        cdef Py_ssize_t n = PyList_GET_SIZE(words), i, count = 0
        cdef PyObject* number
        cdef int feature
        cdef long long a, b
        cdef long long* numbers = scratch.numbers
        memset(scratch.seen, 0xFF, (mask + 1) * sizeof(int))  # -1: an empty slot
        for i in range(n):
            number = PyDict_GetItem(self.words, <object>PyList_GET_ITEM(words, i))
            numbers[i] = self.unknown if number is NULL else <long long><object>number
            feature = self.unigram[numbers[i]]
            if feature >= 0:
                count = _counted(feature, scratch, count, mask)
        for i in range(n - 1):
            a, b = numbers[i], numbers[i + 1]
            if a != self.unknown and b != self.unknown:
                feature = self._pair_feature(a * self.width + b)
                if feature >= 0:
                    count = _counted(feature, scratch, count, mask)
        for i in range(PyList_GET_SIZE(shape_ids)):
            feature = <int><object>PyList_GET_ITEM(shape_ids, i)
            count = _counted(feature, scratch, count, mask)
        return count

    cdef Py_ssize_t _distinct_words(
        self, list words, Scratch* scratch, Py_ssize_t mask, dict unmemoised
    ) except -1:
        """Find each distinct word with word pieces: its pieces, how often it occurs and where
        first (scratch.pieces, word_times, first_use); return how many there are.

        A word is known by its pieces' tuple, which the memo holds once per word, so counting
        compares pointers, not strings. A word with no pieces has no share: it is left out."""
        cdef Py_ssize_t n = PyList_GET_SIZE(words), i, slot, count = 0
        cdef PyObject* pieces
        memset(scratch.seen, 0xFF, (mask + 1) * sizeof(int))
        for i in range(n):
            word = <object>PyList_GET_ITEM(words, i)
            pieces = PyDict_GetItem(self.split, word)
            if pieces is NULL:
                found = self.word_pieces(word)
                pieces = PyDict_GetItem(self.split, word)
                if pieces is NULL:  # the memo is full: count it by word in this call's own
                    unmemoised.setdefault(word, found)
                    pieces = PyDict_GetItem(unmemoised, word)
            if PyTuple_GET_SIZE(<tuple>pieces) == 0:
                continue
            slot = (_spread(<long long><size_t>pieces) >> 32) & mask
            while scratch.seen[slot] != -1 and scratch.pieces[scratch.seen[slot]] != pieces:
                slot = (slot + 1) & mask
            if scratch.seen[slot] != -1:
                scratch.word_times[scratch.seen[slot]] += 1
                continue
            scratch.seen[slot] = count
            scratch.pieces[count] = pieces
            scratch.word_times[count] = 1
            scratch.first_use[count] = i
            count += 1
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

    cdef int _meaning_parts(self, Scratch* scratch, Py_ssize_t words_count, float* shares) except -1:
        """Write each distinct word's share of the meaning vector's pull (zeros for needs
        premium) to its row of shares."""
        cdef Py_ssize_t dimensions = self.vectors.shape[1]
        cdef Py_ssize_t j, p, c, pieces = 0, total_pieces = 0
        cdef tuple word_pieces
        for j in range(words_count):
            total_pieces += PyTuple_GET_SIZE(<tuple>scratch.pieces[j])
        memset(shares, 0, words_count * PARTS * sizeof(float))
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
                word_pieces = <tuple>scratch.pieces[j]
                for p in range(PyTuple_GET_SIZE(word_pieces)):
                    piece_rows[pieces] = <int><object>PyTuple_GET_ITEM(word_pieces, p)
                    owners[pieces] = j
                    repeats[pieces] = <float>scratch.word_times[j]
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
        Scratch* scratch, Py_ssize_t count, list words,
    ):
        """The TOP rows whose sign x values[row * stride] are largest and positive, largest
        first, each named with its value (not times sign)."""
        cdef Py_ssize_t best[TOP]
        cdef float top[TOP]
        cdef int kept = 0, k
        cdef Py_ssize_t i
        cdef float value
        cdef const int* ids = scratch.found
        for i in range(rows):
            value = sign * values[i * stride]
            if value <= 0 or (
                kept == TOP and not _ahead(value, i, top[TOP - 1], best[TOP - 1], ids, count)
            ):
                continue
            k = kept if kept < TOP else TOP - 1  # the free slot, or the last one's (dropped)
            while k > 0 and _ahead(value, i, top[k - 1], best[k - 1], ids, count):
                top[k], best[k] = top[k - 1], best[k - 1]
                k -= 1
            top[k], best[k] = value, i
            if kept < TOP:
                kept += 1
        return tuple([
            self._named(best[k], sign * top[k], scratch, count, words) for k in range(kept)
        ])

    cdef object _named(
        self, Py_ssize_t row, float weight, Scratch* scratch, Py_ssize_t count, list words
    ):
        if row < count:
            name = self.feature_names[scratch.found[row]]
        else:
            first = scratch.first_use[row - count]
            name = self.meaning_prefix + <str>PyList_GET_ITEM(words, first)
        # tuple.__new__ builds the named tuple in C, without its Python __new__.
        return tuple.__new__(self.contribution, (name, <double>weight))


cdef inline Py_ssize_t _counted(
    int feature, Scratch* scratch, Py_ssize_t count, Py_ssize_t mask
) noexcept nogil:
    """Count one occurrence of a feature (scratch.seen: slots of indexes into found); return
    how many distinct features there are now."""
    cdef Py_ssize_t slot = (_spread(feature) >> 32) & mask
    cdef int* seen = scratch.seen
    while seen[slot] != -1:
        if scratch.found[seen[slot]] == feature:
            scratch.times[seen[slot]] += 1
            return count
        slot = (slot + 1) & mask
    seen[slot] = count
    scratch.found[count] = feature
    scratch.times[count] = 1
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


def ascii_tokens(str window):
    """Return routing.learned.features.tokens() of an ASCII, lowercased window: runs of
    letters, runs of digits as zeros (at most four: a longer number is "0000"), and every
    other character but whitespace on its own; the regex's answer, in one pass."""
    cdef Py_ssize_t size = len(window), i = 0, start
    cdef const unsigned char* text = <const unsigned char*>PyUnicode_DATA(window)
    cdef unsigned char c
    cdef list found = []
    if not PyUnicode_IS_COMPACT_ASCII(window):
        raise ValueError("ascii_tokens reads ASCII text only")
    while i < size:
        c = text[i]
        start = i
        if b"a"[0] <= c <= b"z"[0]:
            i += 1
            while i < size and b"a"[0] <= text[i] <= b"z"[0]:
                i += 1
            found.append(PyUnicode_FromStringAndSize(<const char*>text + start, i - start))
        elif b"0"[0] <= c <= b"9"[0]:
            i += 1
            while i < size and b"0"[0] <= text[i] <= b"9"[0]:
                i += 1
            found.append(_ZEROS[min(i - start, 4)])
        else:
            i += 1
            if not _is_space(c):
                found.append(PyUnicode_FromStringAndSize(<const char*>text + start, 1))
    return found


_ZEROS = ("", "0", "00", "000", "0000")


cdef inline bint _is_space(unsigned char c) noexcept nogil:
    # What the regex's \s matches among ASCII characters (str patterns are Unicode-aware).
    return c == 32 or 9 <= c <= 13 or 28 <= c <= 31
