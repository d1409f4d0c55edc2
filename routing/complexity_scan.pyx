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
    int PyUnicode_KIND(object)
    void* PyUnicode_DATA(object)
    Py_ssize_t PyUnicode_GET_LENGTH(object)
    Py_UCS4 PyUnicode_READ(int kind, const void* data, Py_ssize_t index) nogil
    bint Py_UNICODE_ISSPACE(Py_UCS4)
    bint Py_UNICODE_ISDECIMAL(Py_UCS4)

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


cdef inline bint _list_item_at(int kind, const void* d, Py_ssize_t n, Py_ssize_t i) noexcept:
    """Does a list item start at i: complexity._FIRST_LIST_ITEM.match(window, i)?"""
    cdef Py_UCS4 c
    cdef Py_ssize_t start
    while i < n and (PyUnicode_READ(kind, d, i) == SPACE or PyUnicode_READ(kind, d, i) == TAB):
        i += 1
    if i >= n:
        return False
    c = PyUnicode_READ(kind, d, i)
    if Py_UNICODE_ISDECIMAL(c):  # \d{1,2}[.)]: a second digit must be followed by . or )
        i += 1
        if i < n and Py_UNICODE_ISDECIMAL(PyUnicode_READ(kind, d, i)):
            i += 1
        if i >= n or (PyUnicode_READ(kind, d, i) != 46 and PyUnicode_READ(kind, d, i) != 41):
            return False
    elif not (c == 45 or c == 42 or c == 0x2022 or c == 43):  # - * • +
        return False
    i += 1
    start = i
    while i < n and (PyUnicode_READ(kind, d, i) == SPACE or PyUnicode_READ(kind, d, i) == TAB):
        i += 1
    return i > start and i < n and not Py_UNICODE_ISSPACE(PyUnicode_READ(kind, d, i))


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


cdef inline Py_ssize_t _runs(const void* d, int kind, Py_ssize_t n, Py_UCS4 mark, Py_ssize_t* marks) noexcept nogil:
    """Return how many runs of `mark` the text holds; add how many marks to `marks`."""
    cdef const unsigned char* start
    cdef const unsigned char* at
    cdef const unsigned char* end
    cdef Py_ssize_t i = 0, runs = 0, run
    if kind == 1:  # memchr skips to the next mark
        start = <const unsigned char*>d
        end = start + n
        at = start
        while at < end:
            at = <const unsigned char*>memchr(at, mark, end - at)
            if at == NULL:
                break
            run = 0
            while at < end and at[0] == mark:
                at += 1
                run += 1
            runs += 1
            marks[0] += run
        return runs
    while i < n:
        if PyUnicode_READ(kind, d, i) == mark:
            runs += 1
            while i < n and PyUnicode_READ(kind, d, i) == mark:
                i += 1
                marks[0] += 1
        else:
            i += 1
    return runs


cdef inline Py_ssize_t _fences(const void* d, int kind, Py_ssize_t n) noexcept nogil:
    """Return text.count("```"): each run of k backticks holds k // 3."""
    cdef Py_ssize_t i = 0, run, fences = 0
    while i < n:
        run = 0
        while i < n and PyUnicode_READ(kind, d, i) == 96:
            run += 1
            i += 1
        fences += run // 3
        i += 1
    return fences


def text_counts(str text, scan, units):
    """Return routing.complexity._text_counts(text, scan, units): (questions, backticks,
    fences) of the whole text, then (digit runs, code symbols, list items, table rows, length
    limits) of the window of its routing.text_scan.TextScan; `units` holds the length-limit
    unit words."""
    cdef str window = scan.window
    cdef bytes data = scan.data, padded = scan.padded
    cdef const unsigned char* s = <const unsigned char*>PyBytes_AS_STRING(data)
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(padded)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t i, j, digit_runs = 0, braces = 0, opening = 0, symbols = 0
    cdef Py_ssize_t pipe_after = 0, pipe_before = 0, delimited = 0, newlines = 0
    cdef Py_ssize_t items = 0, limits = 0, rows = 0, length, delimiters = 0
    cdef Py_ssize_t questions, ticks = 0, fences = 0, marks = 0
    cdef int kind = PyUnicode_KIND(text)
    cdef void* d = PyUnicode_DATA(text)
    cdef const unsigned char* at
    cdef const unsigned char* end
    cdef unsigned char c, what
    length = PyUnicode_GET_LENGTH(text)
    # The last "?" of a run counts as a question ("???" is one); code fences are "```".
    questions = _runs(d, kind, length, 63, &marks)
    if _runs(d, kind, length, 96, &ticks) and ticks >= 3:
        fences = _fences(d, kind, length)
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
                if _delimited_row_at(s, n, i + 1):
                    delimited += 1
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
        kind = PyUnicode_KIND(window)
        d = PyUnicode_DATA(window)
        length = PyUnicode_GET_LENGTH(window)
        items = _list_item_at(kind, d, length, 0)
        if kind == 1:  # memchr skips to the next line break
            at = <const unsigned char*>d
            end = at + length
            while True:
                at = <const unsigned char*>memchr(at, NEWLINE, end - at)
                if at == NULL:
                    break
                at += 1
                items += _list_item_at(kind, d, length, at - <const unsigned char*>d)
        else:
            for i in range(length):
                if PyUnicode_READ(kind, d, i) == NEWLINE:
                    items += _list_item_at(kind, d, length, i + 1)
    return questions, ticks, fences, digit_runs, symbols, items, rows, limits
