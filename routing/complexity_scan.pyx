# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The window counts of routing.complexity, compiled: one call of plain loops instead of some
fifteen counts, translations and regular expressions over the same bytes.

`window_counts` gives what routing.complexity._window_counts (the pure-Python code, used when
this module is not compiled) gives, to the same integer: tests/routing/test_complexity_scan.py
holds the two equal on crafted and random texts. `make install` compiles this file
(scripts/build_kernel.py).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE

cdef extern from "Python.h":
    int PyUnicode_KIND(object)
    void* PyUnicode_DATA(object)
    Py_ssize_t PyUnicode_GET_LENGTH(object)
    Py_UCS4 PyUnicode_READ(int kind, void* data, Py_ssize_t index)
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


cdef inline bint _list_item_at(int kind, void* d, Py_ssize_t n, Py_ssize_t i) noexcept:
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


def window_counts(scan, units):
    """Return (digit runs, code symbols, list items, table rows, length limits) of a
    routing.text_scan.TextScan's window; `units` holds the length-limit unit words."""
    cdef str window = scan.window
    cdef bytes data = scan.data, padded = scan.padded
    cdef const unsigned char* s = <const unsigned char*>PyBytes_AS_STRING(data)
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(padded)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data), size = PyBytes_GET_SIZE(padded)
    cdef Py_ssize_t i, j, digit_runs = 0, braces = 0, opening = 0, symbols = 0
    cdef Py_ssize_t pipe_after = 0, pipe_before = 0, delimited = 0, newlines = 0
    cdef Py_ssize_t items = 0, limits = 0, rows = 0, length, delimiters = 0
    cdef int kind
    cdef void* d
    cdef unsigned char c, previous = 0
    for i in range(n):
        c = s[i]
        if 48 <= c <= 57:
            if not (48 <= previous <= 57):
                digit_runs += 1
        elif c == NEWLINE:
            newlines += 1
            if previous == 59:  # ";\n"
                symbols += 1
            elif previous == PIPE:
                pipe_after += 1
            if i + 1 < n:
                if s[i + 1] == PIPE:
                    pipe_before += 1
                if _delimited_row_at(s, n, i + 1):
                    delimited += 1
        elif c == COMMA or c == TAB:
            delimiters += 1
        elif c == 123:  # {
            opening += 1
        elif c == 125:  # }
            braces += 1
        elif c == 41 and previous == 40:  # "()"
            symbols += 1
        previous = c
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
        for i in range(length):
            if PyUnicode_READ(kind, d, i) == NEWLINE:
                items += _list_item_at(kind, d, length, i + 1)
    if digit_runs:
        # "150 words": a digit, one separator, a unit word, a separator (in the normalised
        # bytes, where every separator is a space).
        for i in range(1, size - 2):
            if 48 <= p[i] <= 57 and p[i + 1] == SPACE and 97 <= p[i + 2] <= 122:
                j = i + 3
                while j < size and p[j] != SPACE and j - i < 16:
                    j += 1
                if p[j] == SPACE and PyBytes_FromStringAndSize(<const char*>p + i + 2, j - i - 2) in units:
                    limits += 1
    return digit_runs, symbols, items, rows, limits
