# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The counts of routing.complexity, compiled: one call of plain loops instead of some twenty
counts, translations and regular expressions over the same text.

`text_counts` gives what routing.complexity._text_counts (the pure-Python code, used when this
module is not compiled) gives, to the same integer: tests/routing/test_complexity_scan.py
holds the two equal on crafted and random texts. `make install` compiles this file
(scripts/build_kernel.py).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.string cimport memchr

cdef extern from "Python.h":
    ctypedef unsigned short Py_UCS2
    int PyUnicode_KIND(object)
    void* PyUnicode_DATA(object)
    Py_ssize_t PyUnicode_GET_LENGTH(object)
    bint Py_UNICODE_ISSPACE(Py_UCS4) nogil
    bint Py_UNICODE_ISDECIMAL(Py_UCS4) nogil

cdef extern from *:
    """
    /* The questions ("?" not followed by another) and backticks of a text of 2- or 4-byte
       characters, with text.count("```"). Blocks without either mark are skipped after one
       pass the compiler vectorises. */
    #define MARKS(NAME, T)                                                                   \
    static Py_ssize_t NAME(const T *t, Py_ssize_t n, Py_ssize_t *ticks, Py_ssize_t *fences) \
    {                                                                                        \
        Py_ssize_t questions = 0, run_start = 0;                                             \
        for (Py_ssize_t block = 0; block < n; block += 64) {                                 \
            Py_ssize_t end = block + 64 < n ? block + 64 : n;                                \
            int any = 0;                                                                     \
            for (Py_ssize_t i = block; i < end; i++)                                         \
                any |= (t[i] == 63) | (t[i] == 96);                                          \
            if (!any)                                                                        \
                continue;                                                                    \
            for (Py_ssize_t i = block; i < end; i++) {                                       \
                if (t[i] == 63) {                                                            \
                    questions += i + 1 == n || t[i + 1] != 63;                               \
                } else if (t[i] == 96) {                                                     \
                    *ticks += 1;                                                             \
                    if (i == 0 || t[i - 1] != 96)                                            \
                        run_start = i;                                                       \
                    if (i + 1 == n || t[i + 1] != 96)                                        \
                        *fences += (i + 1 - run_start) / 3;                                  \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
        return questions;                                                                    \
    }
    MARKS(marks_ucs2, Py_UCS2)
    MARKS(marks_ucs4, Py_UCS4)
    """
    Py_ssize_t marks_ucs2(const Py_UCS2* t, Py_ssize_t n, Py_ssize_t* ticks, Py_ssize_t* fences) nogil
    Py_ssize_t marks_ucs4(const Py_UCS4* t, Py_ssize_t n, Py_ssize_t* ticks, Py_ssize_t* fences) nogil

cdef enum:
    TAB = 9
    NEWLINE = 10
    SPACE = 32
    COMMA = 44
    PIPE = 124


cdef inline bint _is_field(unsigned char c) noexcept nogil:
    return c != NEWLINE and c != COMMA and c != TAB


cdef inline bint _delimited_row_at(const unsigned char* s, Py_ssize_t n, Py_ssize_t i) noexcept nogil:
    """Does a CSV or TSV row start at i: complexity._FIRST_DELIMITED_ROW.match(data, i)?"""
    cdef Py_ssize_t start = i, field
    # [^\n,\t|]{1,30}+[,\t]: possessive, so a longer field fails
    while i < n and i - start < 30 and _is_field(s[i]) and s[i] != PIPE:
        i += 1
    if i == start or i >= n or (s[i] != COMMA and s[i] != TAB):
        return False
    i += 1
    for field in range(2):  # ([^\n,\t]{0,30}+[,\t]) twice
        start = i
        while i < n and i - start < 30 and _is_field(s[i]):
            i += 1
        if i >= n or (s[i] != COMMA and s[i] != TAB):
            return False
        i += 1
    return True


cdef inline Py_UCS4 _utf8_at(const unsigned char* s, Py_ssize_t* at) noexcept nogil:
    """Return the character whose UTF-8 bytes start at at[0] (well formed: str.encode's), and
    move at[0] past them."""
    cdef Py_ssize_t i = at[0]
    cdef unsigned int c = s[i]
    if c < 0x80:
        at[0] = i + 1
        return <Py_UCS4>c
    if c < 0xE0:
        at[0] = i + 2
        return <Py_UCS4>(((c & 0x1F) << 6) | (s[i + 1] & 0x3F))
    if c < 0xF0:
        at[0] = i + 3
        return <Py_UCS4>(((c & 0x0F) << 12) | ((s[i + 1] & 0x3F) << 6) | (s[i + 2] & 0x3F))
    at[0] = i + 4
    return <Py_UCS4>(
        ((c & 0x07) << 18) | ((s[i + 1] & 0x3F) << 12) | ((s[i + 2] & 0x3F) << 6)
        | (s[i + 3] & 0x3F)
    )


cdef inline bint _list_item_at(const unsigned char* s, Py_ssize_t n, Py_ssize_t i) noexcept nogil:
    """Does a list item start at byte i of the window's UTF-8 bytes, as
    complexity._FIRST_LIST_ITEM matches the window's characters there?"""
    cdef Py_UCS4 c
    cdef Py_ssize_t after, start
    while i < n and (s[i] == SPACE or s[i] == TAB):
        i += 1
    if i >= n:
        return False
    c = _utf8_at(s, &i)
    if Py_UNICODE_ISDECIMAL(c):  # \d{1,2}[.)]: a second digit must be followed by . or )
        if i < n:
            after = i
            c = _utf8_at(s, &after)
            if Py_UNICODE_ISDECIMAL(c):
                i = after
        if i >= n or (s[i] != 46 and s[i] != 41):
            return False
        i += 1
    elif not (c == 45 or c == 42 or c == 0x2022 or c == 43):  # - * • +
        return False
    start = i
    while i < n and (s[i] == SPACE or s[i] == TAB):
        i += 1
    if i == start or i >= n:
        return False
    c = _utf8_at(s, &i)  # not inside the macro below, which reads its argument twice
    return not Py_UNICODE_ISSPACE(c)


cdef enum:  # what a window byte is, for the counts
    OTHER = 0  # a letter, a space, most punctuation: nothing to count
    DIGIT
    LINE_BREAK
    DELIMITER  # , or tab
    OPENING_BRACE
    CLOSING_BRACE
    CLOSING_PARENTHESIS

cdef unsigned char _KIND[256]
for _byte in range(256):
    _KIND[_byte] = OTHER
for _byte in range(48, 58):
    _KIND[_byte] = DIGIT
_KIND[NEWLINE] = LINE_BREAK
_KIND[COMMA] = _KIND[TAB] = DELIMITER
_KIND[123] = OPENING_BRACE
_KIND[125] = CLOSING_BRACE
_KIND[41] = CLOSING_PARENTHESIS


cdef inline bint _is_digit(unsigned char c) noexcept nogil:
    return 48 <= c <= 57


cdef inline Py_ssize_t _runs(const unsigned char* text, Py_ssize_t n, unsigned char mark, Py_ssize_t* marks) noexcept nogil:
    """Return how many runs of `mark` a text of one-byte characters holds; add how many marks
    to `marks`."""
    cdef const unsigned char* at = text
    cdef const unsigned char* end = text + n
    cdef Py_ssize_t runs = 0
    while at < end:
        at = <const unsigned char*>memchr(at, mark, end - at)
        if at == NULL:
            break
        runs += 1
        while at < end and at[0] == mark:
            at += 1
            marks[0] += 1
    return runs


cdef inline Py_ssize_t _fences(const unsigned char* text, Py_ssize_t n) noexcept nogil:
    """Return text.count("```") of a text of one-byte characters: a run of k backticks holds
    k // 3."""
    cdef Py_ssize_t i = 0, run, fences = 0
    while i < n:
        run = 0
        while i < n and text[i] == 96:
            run += 1
            i += 1
        fences += run // 3
        i += 1
    return fences


def text_counts(text, scan, units):
    """Return routing.complexity._text_counts(text, scan, units): (questions, backticks,
    fences) of the whole text, then (digit runs, code symbols, list items, table rows, length
    limits) of the window of its routing.text_scan.TextScan; `units` holds the length-limit
    unit words."""
    cdef bytes data = scan.data, padded = scan.padded
    cdef const unsigned char* s = <const unsigned char*>PyBytes_AS_STRING(data)
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(padded)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t i, j, digit_runs = 0, braces = 0, opening = 0, symbols = 0
    cdef Py_ssize_t pipe_after = 0, pipe_before = 0, delimited = 0, newlines = 0
    cdef Py_ssize_t items = 0, limits = 0, rows = 0, length, delimiters = 0
    cdef Py_ssize_t questions, ticks = 0, fences = 0, marks = 0
    cdef int kind
    cdef void* d
    cdef unsigned char c, what
    if not isinstance(text, str):  # a subclass of str is read as one
        raise TypeError(f"text_counts reads a str, not {type(text).__name__}")
    kind = PyUnicode_KIND(text)
    d = PyUnicode_DATA(text)
    length = PyUnicode_GET_LENGTH(text)
    # The last "?" of a run counts as a question ("???" is one); code fences are "```".
    if kind == 1:  # memchr skips to the next mark
        questions = _runs(<const unsigned char*>d, length, 63, &marks)
        if _runs(<const unsigned char*>d, length, 96, &ticks) and ticks >= 3:
            fences = _fences(<const unsigned char*>d, length)
    elif kind == 2:
        questions = marks_ucs2(<const Py_UCS2*>d, length, &ticks, &fences)
    else:
        questions = marks_ucs4(<const Py_UCS4*>d, length, &ticks, &fences)
    for i in range(n):
        c = s[i]
        what = _KIND[c]
        if what == OTHER:
            continue
        if what == DIGIT:
            if i == 0 or not _is_digit(s[i - 1]):
                digit_runs += 1
            # "150 words": a number's last digit, one separator, a unit word, a separator
            # (in the normalised bytes, where the digit is at i + 1 and a separator a space).
            if i + 1 < n and p[i + 2] == SPACE and 97 <= p[i + 3] <= 122:
                j = i + 4
                while p[j] != SPACE and j - i < 16:  # the last byte is a space
                    j += 1
                if p[j] == SPACE and PyBytes_FromStringAndSize(<const char*>p + i + 3, j - i - 3) in units:
                    limits += 1
        elif what == LINE_BREAK:
            newlines += 1
            if i > 0:
                if s[i - 1] == 59:  # ";\n"
                    symbols += 1
                elif s[i - 1] == PIPE:
                    pipe_after += 1
            if i + 1 < n:
                if s[i + 1] == PIPE:
                    pipe_before += 1
                delimited += _delimited_row_at(s, n, i + 1)
                items += _list_item_at(s, n, i + 1)
        elif what == DELIMITER:
            delimiters += 1
        elif what == OPENING_BRACE:
            opening += 1
        elif what == CLOSING_BRACE:
            braces += 1
        elif i > 0 and s[i - 1] == 40:  # "()"
            symbols += 1
    if opening:  # closing braces count only beside an opening one
        symbols += opening + braces
    if newlines:
        rows = max(pipe_after, pipe_before)
        # As the Python code: delimited rows are looked for only when they can make 3 rows.
        if rows + delimiters // 3 >= 3:
            rows += delimited + _delimited_row_at(s, n, 0)
        items += _list_item_at(s, n, 0)
    return questions, ticks, fences, digit_runs, symbols, items, rows, limits
