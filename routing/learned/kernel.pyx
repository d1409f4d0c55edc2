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

Where the time goes is memory, not arithmetic: a 1,000-token prompt touches a few hundred
rows spread over megabytes. So each word is looked up once, in the kernel's own table (one
probe finds its n-gram number and its word pieces; words first seen at run time join it, up
to a bound); the pieces' vectors are summed from a float16 copy of the table where the CPU
converts float16 (half the bytes; the same floats) and fetched a row ahead; and a bigram's key
and id share one table slot. `ascii_tokens` is features.tokens' regex as one pass;
`Scorer.score_text` reads an ASCII window's words with the same rules straight into the word
table (a known word is found by its bytes: no str is made for it, no list is built).
"""

from cpython.dict cimport PyDict_GetItem
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.object cimport PyObject, PyObject_Hash
from cpython.ref cimport Py_INCREF, Py_XDECREF
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.unicode cimport PyUnicode_DATA, PyUnicode_FromStringAndSize
from libc.math cimport exp, log, sqrt
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcmp, memset

cdef extern from "Python.h":
    bint PyUnicode_IS_COMPACT_ASCII(object)
    # The hash of a str is this of its data: an ASCII token hashes as its str would, unmade.
    Py_hash_t _Py_HashBytes(const void*, Py_ssize_t)
    Py_ssize_t PyUnicode_GET_LENGTH(object)
    int PyUnicode_KIND(object)

cdef extern from *:
    """
    #include <immintrin.h>
    #include <stdint.h>

    /* The one loop over many floats: add each word piece's vector (256 dimensions), times
       its weight, to the total. The pieces' rows lie far apart in the table, so each asks
       for the row two ahead before it reads its own. Plain C with restrict: the compiler
       vectorises it. */
    static void add_weighted_rows(float *restrict total, const float *restrict table,
                                  Py_ssize_t width, const int *restrict rows,
                                  const float *restrict weights, Py_ssize_t count)
    {
        for (Py_ssize_t i = 0; i < count; i++) {
            if (i + 2 < count) {
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

    /* The same sums from the table's float16 copy: half the bytes to fetch, converted to
       float32 exactly (the vectors are float16 values), then multiplied and added as
       above (no fused multiply-add), so the totals are the same to the bit. For CPUs with
       F16C (x86-64 since 2012; half_rows_supported() says), when width is a multiple of 8. */
    #if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __attribute__((target("avx,f16c")))
    static void add_weighted_half_rows(float *restrict total, const uint16_t *restrict table,
                                       Py_ssize_t width, const int *restrict rows,
                                       const float *restrict weights, Py_ssize_t count)
    {
        for (Py_ssize_t i = 0; i < count; i++) {
            if (i + 2 < count) {
                const char *ahead = (const char *)(table + (Py_ssize_t)rows[i + 2] * width);
                for (Py_ssize_t b = 0; b < width * 2; b += 64)
                    __builtin_prefetch(ahead + b);
            }
            const uint16_t *restrict row = table + (Py_ssize_t)rows[i] * width;
            const __m256 weight = _mm256_set1_ps(weights[i]);
            for (Py_ssize_t d = 0; d < width; d += 8) {
                __m256 value = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + d)));
                __m256 sum = _mm256_add_ps(_mm256_loadu_ps(total + d), _mm256_mul_ps(weight, value));
                _mm256_storeu_ps(total + d, sum);
            }
        }
    }
    static int half_rows_supported(void)
    {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c");
    }
    #else
    static void add_weighted_half_rows(float *total, const uint16_t *table, Py_ssize_t width,
                                       const int *rows, const float *weights, Py_ssize_t count) {}
    static int half_rows_supported(void) { return 0; }
    #endif
    """
    void add_weighted_rows(
        float* total, const float* table, Py_ssize_t width, const int* rows,
        const float* weights, Py_ssize_t count,
    ) noexcept nogil
    void add_weighted_half_rows(
        float* total, const unsigned short* table, Py_ssize_t width, const int* rows,
        const float* weights, Py_ssize_t count,
    ) noexcept nogil
    bint half_rows_supported() noexcept nogil

cdef enum:
    CLASSES = 9
    SAFETY = 9
    PREMIUM = 10
    PARTS = 11  # a part's columns: the 9 classes, safety, needs premium
    IDF = 11  # a weights row's column after those
    TOP = 3  # contributions named per explanation (routing.learned.explanation.EXPLAIN_TOP)
    NEW_WORDS = 50_000  # words first seen at run time the table keeps, as WordVectors' memo


cdef inline unsigned long long _spread(long long key) noexcept nogil:
    # Fibonacci hashing: the multiply spreads consecutive keys over a table's high bits.
    return <unsigned long long>key * 11400714819323198485ULL


cdef struct Pair:  # a bigram's slot: its key and feature id side by side, one cache line
    long long key
    int feature


cdef struct Word:  # a word's slot: what a request needs of it, found with one probe
    Py_hash_t hash  # Python's, salted per process: crafted words cannot crowd one slot
    PyObject* key  # the word (a reference the table owns); NULL: an empty slot
    long long number  # its number in the n-gram vocabulary (unknown: the last)
    PyObject* pieces  # its word pieces' ids, a tuple the table owns (NULL: no meaning vector)


cdef struct Scratch:  # one request's working memory, freed by _release
    Py_ssize_t n  # the text's words
    long long* numbers  # each word's number (the n-gram vocabulary's)
    PyObject** word_pieces  # each word's pieces (borrowed: the word table holds them), or NULL
    PyObject** names  # each word (borrowed from the table, the caller's list or `kept`)
    int* found  # the distinct features' ids, in order of first use
    int* times  # how often each occurs
    int* seen  # a small open-addressing table: slot -> index into found (or pieces)
    PyObject** pieces  # the distinct words' pieces (borrowed: the word table holds them)
    int* word_times  # how often each distinct word occurs
    int* first_use  # where it first occurs in the words
    float* parts  # a row of PARTS floats per feature, then per distinct word
    float* ranked  # one column to rank
    Py_ssize_t words_count  # distinct words with pieces


cdef int _allocate_words(Scratch* scratch, Py_ssize_t n) except -1:
    scratch.numbers = <long long*>malloc(n * sizeof(long long) + 1)
    scratch.word_pieces = <PyObject**>malloc(n * sizeof(PyObject*) + 1)
    scratch.names = <PyObject**>malloc(n * sizeof(PyObject*) + 1)
    if scratch.numbers is NULL or scratch.word_pieces is NULL or scratch.names is NULL:
        raise MemoryError()
    return 0


cdef int _allocate(Scratch* scratch, Py_ssize_t n, Py_ssize_t most, Py_ssize_t slots) except -1:
    scratch.found = <int*>malloc(most * sizeof(int))
    scratch.times = <int*>malloc(most * sizeof(int))
    scratch.seen = <int*>malloc(2 * slots * sizeof(int))  # features' slots, then words'
    scratch.pieces = <PyObject**>malloc(n * sizeof(PyObject*) + 1)
    scratch.word_times = <int*>malloc(n * sizeof(int) + 1)
    scratch.first_use = <int*>malloc(n * sizeof(int) + 1)
    if (
        scratch.found is NULL or scratch.times is NULL
        or scratch.seen is NULL or scratch.pieces is NULL or scratch.word_times is NULL
        or scratch.first_use is NULL
    ):
        raise MemoryError()
    return 0


cdef void _release(Scratch* scratch):
    free(scratch.numbers)
    free(scratch.word_pieces)
    free(scratch.names)
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
    cdef const unsigned short[:, ::1] half_vectors  # the same, float16: half the bytes
    cdef bint use_half
    cdef const float[:, ::1] projection
    cdef object word_pieces  # word -> its pieces (WordVectors.word_pieces), for a new word
    cdef Word* table  # every word the models know, and the new ones seen, up to a bound
    cdef Py_ssize_t table_mask
    cdef Py_ssize_t table_count
    cdef Py_ssize_t table_limit
    cdef bint hashes_as_str
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
        dict split=None,  # the word vectors' memo: the words whose pieces are known at load
        word_pieces=None,
        half_vectors=None,  # the same vectors, float16 (as stored): summed where F16C is
        Py_ssize_t new_words=NEW_WORDS,
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
            self.word_pieces = word_pieces
            self.use_half = (
                half_vectors is not None
                and half_rows_supported()
                and vectors.shape[1] % 8 == 0
            )
            if self.use_half:
                self.half_vectors = half_vectors.view(np.uint16)
        self.hashes_as_str = _Py_HashBytes(b"meaning", 7) == hash("meaning")
        known = dict.fromkeys(words)
        if self.has_meaning:
            known.update(dict.fromkeys(split))
        self.table_limit = len(known) + new_words
        self._grow_table(2 * len(known))
        for word in known:
            self._add_word(word)
        self._build_pairs(
            np.ascontiguousarray(pair_keys, dtype=np.int64),
            np.ascontiguousarray(pair_ids, dtype=np.int32),
        )

    cdef inline Word* _find_word(self, object word, Py_hash_t hash) noexcept:
        return self._find(
            PyUnicode_DATA(word), PyUnicode_GET_LENGTH(word), PyUnicode_KIND(word), hash
        )

    cdef Word* _find(
        self, const void* data, Py_ssize_t length, int kind, Py_hash_t hash
    ) noexcept:
        """The slot of the word whose characters these are (length characters of kind bytes
        each, as CPython stores a str), or NULL. An ASCII text's bytes are those of its str:
        one-byte kind, and no other one-byte str has only bytes below 128."""
        cdef Py_ssize_t slot = hash & self.table_mask
        cdef Word* found
        while True:
            found = &self.table[slot]
            if found.key is NULL:
                return NULL
            if (
                found.hash == hash
                and PyUnicode_GET_LENGTH(<object>found.key) == length
                and PyUnicode_KIND(<object>found.key) == kind
                and memcmp(PyUnicode_DATA(<object>found.key), data, length * kind) == 0
            ):
                return found
            slot = (slot + 1) & self.table_mask

    cdef Word* _add_word(self, object word) except NULL:
        """Put a word in the table (its number, its pieces) and return its slot."""
        cdef Py_hash_t hash = PyObject_Hash(word)
        cdef Py_ssize_t slot
        if 2 * (self.table_count + 1) > self.table_mask + 1:
            self._grow_table(2 * (self.table_mask + 1))
        slot = hash & self.table_mask
        while self.table[slot].key is not NULL:
            slot = (slot + 1) & self.table_mask
        number = self.words.get(word)
        pieces = self.word_pieces(word) if self.has_meaning else None
        self.table[slot].hash = hash
        self.table[slot].number = self.unknown if number is None else number
        self.table[slot].key = <PyObject*>word
        Py_INCREF(word)
        self.table[slot].pieces = NULL
        if pieces is not None:
            self.table[slot].pieces = <PyObject*>pieces
            Py_INCREF(pieces)
        self.table_count += 1
        return &self.table[slot]

    cdef int _grow_table(self, Py_ssize_t wanted) except -1:
        cdef Py_ssize_t size = 16, i, slot, old_size = self.table_mask + 1 if self.table else 0
        cdef Word* old = self.table
        while size < wanted:
            size *= 2
        self.table = <Word*>calloc(size, sizeof(Word))
        if self.table is NULL:
            self.table = old
            raise MemoryError()
        self.table_mask = size - 1
        for i in range(old_size):
            if old[i].key is not NULL:
                slot = old[i].hash & self.table_mask
                while self.table[slot].key is not NULL:
                    slot = (slot + 1) & self.table_mask
                self.table[slot] = old[i]
        free(old)
        return 0

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

    @property
    def reads_half_vectors(self):
        """Whether the meaning vector is summed from the word vectors' float16 table."""
        return self.use_half

    def __dealloc__(self):
        free(self.pairs)
        cdef Py_ssize_t i
        if self.table is not NULL:
            for i in range(self.table_mask + 1):
                Py_XDECREF(self.table[i].key)
                Py_XDECREF(self.table[i].pieces)
            free(self.table)

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
        cdef Py_ssize_t n = PyList_GET_SIZE(words), i
        cdef Scratch scratch
        cdef dict unmemoised = {}  # pieces of new words past the word table's bound, this call
        memset(&scratch, 0, sizeof(Scratch))
        try:
            _allocate_words(&scratch, n)
            for i in range(n):
                word = <object>PyList_GET_ITEM(words, i)
                self._take_word(&scratch, word, PyObject_Hash(word), unmemoised)
            return self._scored(&scratch, shape_ids, premium)
        finally:
            _release(&scratch)

    @property
    def reads_text(self):
        """Whether score_text can find a word by its characters: a str's hash is the hash of
        its data (CPython's; checked when the table is built)."""
        return self.hashes_as_str

    def score_text(self, str window, list shape_ids, bint premium):
        """score(tokens(window), shape_ids, premium) for an ASCII, lowercased window, with the
        words read straight from its characters: a known word is found in the word table by
        its bytes, and no str is made for it (ascii_tokens' rules)."""
        cdef Py_ssize_t size = len(window), i = 0, start, length
        cdef const char* text = <const char*>PyUnicode_DATA(window)
        cdef const char* token
        cdef unsigned char c
        cdef Py_hash_t hash
        cdef Word* known
        cdef Scratch scratch
        cdef dict unmemoised = {}
        cdef list kept = []  # words made here that the full table does not hold, this call
        if not PyUnicode_IS_COMPACT_ASCII(window):
            raise ValueError("score_text reads ASCII text only")
        memset(&scratch, 0, sizeof(Scratch))
        try:
            _allocate_words(&scratch, size)
            while i < size:
                c = <unsigned char>text[i]
                start = i
                i += 1
                if b"a"[0] <= c <= b"z"[0]:
                    while i < size and b"a"[0] <= <unsigned char>text[i] <= b"z"[0]:
                        i += 1
                    token, length = text + start, i - start
                elif b"0"[0] <= c <= b"9"[0]:
                    while i < size and b"0"[0] <= <unsigned char>text[i] <= b"9"[0]:
                        i += 1
                    token, length = _ZERO_RUN, min(i - start, 4)
                elif _is_space(c):
                    continue
                else:
                    token, length = text + start, 1
                hash = _Py_HashBytes(token, length)
                known = self._find(token, length, 1, hash)
                if known is not NULL:
                    self._take_known(&scratch, known)
                else:  # a word first seen: made once, then the table holds it (to its bound)
                    word = PyUnicode_FromStringAndSize(token, length)
                    if self._take_word(&scratch, word, hash, unmemoised) is NULL:
                        kept.append(word)
            return self._scored(&scratch, shape_ids, premium)
        finally:
            _release(&scratch)

    cdef inline void _take_known(self, Scratch* scratch, Word* known) noexcept:
        cdef Py_ssize_t i = scratch.n
        scratch.numbers[i] = known.number
        scratch.word_pieces[i] = known.pieces
        scratch.names[i] = known.key
        scratch.n = i + 1

    cdef Word* _take_word(
        self, Scratch* scratch, object word, Py_hash_t hash, dict unmemoised
    ) except? NULL:
        """Append a word to the text's words; return its table slot, or NULL when the table is
        full and does not hold it (its pieces are then this call's, in unmemoised)."""
        cdef Word* known = self._find_word(word, hash)
        cdef Py_ssize_t i
        if known is NULL and self.table_count < self.table_limit:
            known = self._add_word(word)
        if known is not NULL:
            self._take_known(scratch, known)
            return known
        # The table is full: a word new to it is no n-gram's; this call keeps its pieces.
        i = scratch.n
        scratch.numbers[i], scratch.word_pieces[i], scratch.names[i] = self.unknown, NULL, <PyObject*>word
        if self.has_meaning:
            if word not in unmemoised:
                unmemoised[word] = self.word_pieces(word)
            scratch.word_pieces[i] = PyDict_GetItem(unmemoised, word)
        scratch.n = i + 1
        return NULL

    cdef tuple _scored(self, Scratch* scratch, list shape_ids, bint premium):
        """The scores of the text's words (scratch: numbers, word_pieces, names)."""
        cdef Py_ssize_t n = scratch.n
        cdef Py_ssize_t most = 2 * n + PyList_GET_SIZE(shape_ids) + 1
        cdef Py_ssize_t slots = 16
        while slots < 2 * most:
            slots *= 2
        cdef Py_ssize_t count, words_count, rows, i
        cdef int best
        cdef float* parts
        cdef float* ranked
        _allocate(scratch, n, most, slots)
        count = self._count_features(shape_ids, scratch, slots - 1)
        words_count = scratch.words_count
        rows = count + words_count
        scratch.parts = <float*>malloc((rows + 1) * PARTS * sizeof(float))
        scratch.ranked = <float*>malloc((rows + 1) * sizeof(float))
        if scratch.parts is NULL or scratch.ranked is NULL:
            raise MemoryError()
        self._ngram_parts(scratch.found, scratch.times, count, scratch.parts)
        if words_count:
            self._meaning_parts(scratch, words_count, scratch.parts + count * PARTS)
        sums = self._sums(scratch.parts, rows)
        probabilities, best = self._probabilities(sums)
        parts, ranked = scratch.parts, scratch.ranked
        for i in range(rows):  # a part's pull toward the best class, against its mean pull
            ranked[i] = parts[i * PARTS + best] - _class_sum(parts + i * PARTS) * <float>(1.0 / CLASSES)
        category = self._top(ranked, 1, rows, 1, scratch, count)
        safety_up = self._top(parts + SAFETY, PARTS, rows, 1, scratch, count)
        safety_down = self._top(parts + SAFETY, PARTS, rows, -1, scratch, count)
        premium_up = premium_down = ()
        if premium:
            premium_up = self._top(parts + PREMIUM, PARTS, rows, 1, scratch, count)
            premium_down = self._top(parts + PREMIUM, PARTS, rows, -1, scratch, count)
        return sums, probabilities, best, category, safety_up, safety_down, premium_up, premium_down

    cdef Py_ssize_t _count_features(
        self, list shape_ids, Scratch* scratch, Py_ssize_t mask
    ) except -1:
        """Count the text's distinct features (ids in order of first use: scratch.found and
        times) and return how many there are; with a meaning vector, also find its distinct
        words that have word pieces (scratch.pieces, word_times, first_use; words_count).

        A word is known by its pieces' tuple, one per word, so counting them compares
        pointers, not strings. A word with no pieces has no share: it is left out."""
        cdef Py_ssize_t n = scratch.n, i, count = 0
        cdef long long* numbers = scratch.numbers
        cdef int* seen_words = scratch.seen + mask + 1
        cdef int feature
        cdef long long a, b
        cdef PyObject* pieces
        memset(scratch.seen, 0xFF, 2 * (mask + 1) * sizeof(int))  # -1: an empty slot
        scratch.words_count = 0
        for i in range(n):
            feature = self.unigram[numbers[i]]
            if feature >= 0:
                count = _counted(feature, scratch, count, mask)
            pieces = scratch.word_pieces[i]
            if pieces is not NULL and PyTuple_GET_SIZE(<tuple>pieces):
                _word_counted(pieces, i, scratch, seen_words, mask)
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
            if self.use_half:
                add_weighted_half_rows(
                    total, &self.half_vectors[0, 0], dimensions, piece_rows, repeats, pieces
                )
            else:
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
        Scratch* scratch, Py_ssize_t count,
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
            self._named(best[k], sign * top[k], scratch, count) for k in range(kept)
        ])

    cdef object _named(self, Py_ssize_t row, float weight, Scratch* scratch, Py_ssize_t count):
        if row < count:
            name = self.feature_names[scratch.found[row]]
        else:
            first = scratch.first_use[row - count]
            name = self.meaning_prefix + <str>scratch.names[first]
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


cdef inline void _word_counted(
    PyObject* pieces, Py_ssize_t at, Scratch* scratch, int* seen, Py_ssize_t mask
) noexcept:
    """Count one occurrence of the word whose pieces these are, first used at `at`."""
    cdef Py_ssize_t slot = (_spread(<long long><size_t>pieces) >> 32) & mask
    while seen[slot] != -1:
        if scratch.pieces[seen[slot]] == pieces:
            scratch.word_times[seen[slot]] += 1
            return
        slot = (slot + 1) & mask
    seen[slot] = scratch.words_count
    scratch.pieces[scratch.words_count] = pieces
    scratch.word_times[scratch.words_count] = 1
    scratch.first_use[scratch.words_count] = at
    scratch.words_count += 1


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
cdef const char* _ZERO_RUN = b"0000"  # a run of digits is as many zeros, at most four


def ascii_shape_counts(str window):
    """Return the digits, letters and spaces (" " and newlines) of an ASCII window: what
    routing.learned.features.shape_features counts, in one pass."""
    cdef Py_ssize_t size = len(window), i, digits = 0, letters = 0, spaces = 0
    cdef const unsigned char* text = <const unsigned char*>PyUnicode_DATA(window)
    cdef unsigned char c
    if not PyUnicode_IS_COMPACT_ASCII(window):
        raise ValueError("ascii_shape_counts reads ASCII text only")
    for i in range(size):
        c = text[i]
        if b"0"[0] <= c <= b"9"[0]:
            digits += 1
        elif b"a"[0] <= (c | 0x20) <= b"z"[0]:
            letters += 1
        elif c == b" "[0] or c == b"\n"[0]:
            spaces += 1
    return digits, letters, spaces


cdef inline bint _is_space(unsigned char c) noexcept nogil:
    # What the regex's \s matches among ASCII characters (str patterns are Unicode-aware).
    return c == 32 or 9 <= c <= 13 or 28 <= c <= 31
