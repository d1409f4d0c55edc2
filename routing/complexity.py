"""Explainable 0-10 complexity score for a prompt, from cheap and deterministic text signals.

Eight signals each add capped points (so no single one dominates) and the total is capped
at 10. Question marks and code fences are counted over the whole text; the other signals read
the window that the classifier reads too (routing.text_scan.scan_text: at most
WINDOW_HEAD_CHARS + WINDOW_TAIL_CHARS characters, the start, where instructions usually are,
and the end, where the question usually is, after pasted material), normalised once for both,
and the vocabulary is found in the same pass as the category keywords.
The length signal already accounts for the rest, and the cost stays flat for 100k-token
prompts. For a text that fits in the window, appending more text never lowers the score.

The counts are one call of compiled loops (routing/complexity_scan.pyx, built at install;
`_text_counts` gives the same in Python without it), and each signal is remembered by the
counts and terms it is made of, so formatting and round() are paid once per new combination.
"""

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from operator import itemgetter
from typing import NamedTuple

from routing.text_scan import TextScan, register_terms, scan_text, term_words

# Signal caps; they sum to well over 10 so several moderate signals are needed to reach it.
_CAPS = {
    "length": 4.0,
    "code": 3.0,
    "reasoning": 3.0,
    "numbers": 3.0,
    "questions": 2.0,
    "steps": 2.0,
    "constraints": 2.0,
    "tables": 2.0,
}

_DIGIT_TABLE = bytes(48 if 48 <= c <= 57 else 32 for c in range(256))

# Vocabulary per signal: (weight, comma-separated terms). Single words also match plurals.
_TERMS = {
    "reasoning": (
        (
            1.0,
            "analyze, analyse, analysis, analyzing, analysing, analytical, compare, comparison, "
            "contrast, trade-off, tradeoff, strategy, strategies, strategic, prove, proof, "
            "derive, derivation, plan, planning, roadmap, optimize, optimise, optimization, "
            "optimisation, forecast, forecasting, evaluate, evaluation, assess, assessment, "
            "justify, prioritize, prioritise, implication, hypothesis, root cause, pros and cons, "
            "recommend, recommendation, critique, diagnose, scenario, what if, simulate, infer, "
            "deduce, architecture",
        ),
        (
            0.5,
            "therefore, thus, hence, whether, unless, however, although, despite, assuming, "
            "suppose, given that, consequently, implies, because, otherwise, nevertheless, "
            "even though, if, would, could, most likely, strongest, weakest, argument, evidence, "
            "valid, conclude, conclusion, reasoning, explain, why, which of the following, "
            "impact, risk, alternative",
        ),
    ),
    "constraints": (
        (
            1.0,
            "must, exactly, at least, at most, no more than, no less than, fewer than, "
            "no longer than, without, do not, don't, never, avoid, strictly, required, "
            "requirement, ensure, make sure, limit, maximum, minimum, within, budget, deadline, "
            "word count, format, bullet points, json, in the style of, should not, constraint, "
            "mandatory",
        ),
        (0.5, "only, include, exclude, tone, style, keep it, under, up to, concise"),
    ),
    "steps": (
        (
            1.0,
            "step by step, steps, walk me through, break down, break it down, phases, stages, "
            "milestones, firstly, secondly, thirdly, finally, next steps, action plan, checklist, "
            "timeline, outline, each part",
        ),
    ),
    "number_words": (
        (
            1.0,
            "two, three, four, five, six, seven, eight, nine, ten, eleven, twelve, fifteen, "
            "twenty, thirty, forty, fifty, hundred, thousand, million, billion, half, twice, "
            "double, triple, dozen, quarter, percent, percentage",
        ),
    ),
    "quantity_asks": (
        (
            1.0,
            "how many, how much, how long, how far, how old, calculate, compute, total, average, "
            "sum, ratio, per, each, remaining, left over, difference, rate",
        ),
    ),
    "code_words": (
        (
            1.0,
            "def, elif, lambda, const, println, printf, void, struct, nullptr, namespace, async, "
            "await, typeof, isinstance, kwargs, argv, stdout, stderr, npm, pip, git, sql, regex, "
            "json, api, html, css, javascript, python, typescript, java, php, ruby, golang, "
            "kotlin, bash, docker, kubernetes, django, react, refactor, debug, bug, compile, "
            "compiler, traceback, exception, stack trace, unit test, function, variable, "
            "algorithm, runtime, endpoint, repository, script, database, query, null",
        ),
    ),
}


_LIMIT_UNITS = frozenset(
    form
    for unit in (
        b"word character char sentence paragraph bullet line hashtag emoji item token page "
        b"tweet slide idea option example variation version hook caption post headline title "
        b"slogan tagline question tip reason point"
    ).split()
    for form in (unit, unit + b"s")
)

# What a length limit looks like once digits are zeroed: "0 words ", "0 characters ".
_LIMIT_NEEDLES = {unit: b"0 " + unit + b" " for unit in _LIMIT_UNITS}


@dataclass(frozen=True)
class _Vocabulary:
    """Each (group, term) is one bit of an int, so the terms a text holds are one int, the OR
    of its forms' bits, and a group's are that int masked: cheap to build, compare and hash.
    A group's bits follow its terms' sorted order, so they are read out already sorted."""

    bits: dict[bytes, int]  # form -> its (group, term) bits: b"plans" -> plan's in reasoning
    keys: frozenset[bytes]  # the keys of `bits`
    groups: dict[str, int]  # group -> the bits of its terms
    terms: dict[int, str]  # one bit set -> its term
    by_weight: dict[float, int]  # weight -> the bits of the terms of that weight

    def first_terms(self, mask: int, count: int) -> list[str]:
        """Return the first `count` terms of a group's mask, in sorted order."""
        found = []
        while mask and len(found) < count:
            lowest = mask & -mask
            found.append(self.terms[lowest])
            mask ^= lowest
        return found

    def weight_of(self, mask: int) -> float:
        # The weights are halves and wholes, so the sum is exact in any order.
        return sum([weight * (mask & bits).bit_count() for weight, bits in self.by_weight.items()])


def _vocabulary(groups: dict[str, tuple[tuple[float, str], ...]]) -> _Vocabulary:
    weights = {  # (group, term) -> weight
        (group, term.strip()): weight
        for group, weighted in groups.items()
        for weight, terms in weighted
        for term in terms.split(",")
    }
    if any(weight * 2 != int(weight * 2) for weight in weights.values()):
        raise ValueError("a vocabulary weight must be a multiple of 0.5 (see weight_of)")
    bits: dict[bytes, int] = {}
    group_bits = dict.fromkeys(groups, 0)
    terms: dict[int, str] = {}
    by_weight: dict[float, int] = {}
    for position, (group, term) in enumerate(sorted(weights)):
        bit = 1 << position
        group_bits[group] |= bit
        terms[bit] = term
        by_weight[weights[group, term]] = by_weight.get(weights[group, term], 0) | bit
        words = term_words(term)
        forms = {b" ".join(words)}
        if len(words) == 1:
            forms |= {words[0] + b"s", words[0] + b"es"}
            if words[0].endswith(b"y"):
                forms.add(words[0][:-1] + b"ies")
        for form in forms:
            bits[form] = bits.get(form, 0) | bit
    return _Vocabulary(bits, frozenset(bits), group_bits, terms, by_weight)


_VOCABULARY = _vocabulary(_TERMS)
_REASONING, _CONSTRAINTS, _STEPS, _NUMBER_WORDS, _QUANTITY_ASKS, _CODE_WORDS = (
    _VOCABULARY.groups[group]
    for group in (
        "reasoning",
        "constraints",
        "steps",
        "number_words",
        "quantity_asks",
        "code_words",
    )
)
# One pass over the window finds the vocabulary and the length-limit units along with the
# category keywords.
register_terms(_VOCABULARY.keys | _LIMIT_UNITS)

_QUESTION = re.compile(r"\?(?!\?)")  # the last "?" of a run: "???" is one question
# A list item at the start of a line: "1." "2)" "-" "*" "•" "+", then text. A match never
# spans a line break, so the first line is matched on its own, without copying the text.
_LIST_ITEM = re.compile(r"\n[ \t]*(?:\d{1,2}[.)]|[-*•+])[ \t]+\S")
_FIRST_LIST_ITEM = re.compile(r"[ \t]*(?:\d{1,2}[.)]|[-*•+])[ \t]+\S")
# A CSV or TSV row: a line that starts with two short delimited fields. The quantifiers are
# possessive: a field never contains the delimiter after it, so backtracking cannot help.
_DELIMITED_ROW = re.compile(rb"\n[^\n,\t|]{1,30}+[,\t][^\n,\t]{0,30}+[,\t][^\n,\t]{0,30}+[,\t]")
_FIRST_DELIMITED_ROW = re.compile(rb"[^\n,\t|]{1,30}+[,\t][^\n,\t]{0,30}+[,\t][^\n,\t]{0,30}+[,\t]")
_ZERO_DIGITS = bytes(48 if 48 <= c <= 57 else c for c in range(256))


class ComplexitySignal(NamedTuple):
    """One signal's share of the score. A named tuple, not a dataclass: it is built in a third
    of the time, and is as immutable (it also equals the plain tuple of its fields)."""

    name: str  # stable: length, questions, steps, code, numbers, tables, reasoning, constraints
    points: float  # contribution to the score, already capped
    detail: str  # for people, e.g. "1,240 tokens", "3 questions"


@dataclass(frozen=True)
class ComplexityEstimate:
    score: float  # 0.0..10.0, one decimal: the capped sum of the signals' points
    signals: tuple[ComplexitySignal, ...]  # only those that contributed, most points first


_POINTS = itemgetter(1)  # a signal's points


def estimate_complexity(text: str, *, token_count: int) -> ComplexityEstimate:
    """Score 0-10 from the prompt text (user-visible messages joined) and its token count."""
    scan = scan_text(text)
    counts = text_counts(text, scan, _LIMIT_UNITS)
    questions, ticks, fences, digit_runs, symbols, items, rows, limits = counts
    found = 0  # the (group, term) bits of the vocabulary in the window
    for key in _VOCABULARY.keys.intersection(scan.hits):
        found |= _VOCABULARY.bits[key]
    # Each signal is made from counts and term bits, by a memo: the same counts give the same
    # points and words, so only new ones pay for round() and the formatting. Appended in a
    # fixed order, which breaks ties in the sort below.
    signals = []
    if token_count > 20:
        signals.append(_length_signal(token_count))
    if questions:
        signals.append(_questions_signal(questions))
    terms = found & _STEPS
    if items or terms:
        signals.append(_steps_signal(items, terms))
    inline = ticks - 3 * fences >= 2
    terms = found & _CODE_WORDS
    if fences or inline or symbols or terms:
        signals.append(_code_signal(fences > 0, inline, symbols, terms))
    numbers = digit_runs + (found & _NUMBER_WORDS).bit_count()
    if numbers:
        signals.append(_numbers_signal(numbers, found & _QUANTITY_ASKS if numbers >= 2 else 0))
    if rows >= 3:
        signals.append(_tables_signal(rows))
    terms = found & _REASONING
    if terms:
        signals.append(_reasoning_signal(terms))
    terms = found & _CONSTRAINTS
    if limits or terms:
        signals.append(_constraints_signal(limits, terms))
    if len(signals) > 1:
        signals.sort(key=_POINTS, reverse=True)  # stable: ties keep the order above
        total = sum([signal.points for signal in signals])
        return ComplexityEstimate(10.0 if total > 10.0 else round(total, 1), tuple(signals))
    if signals:  # one signal: the sum is its points
        return ComplexityEstimate(round(signals[0].points, 1), (signals[0],))
    return _NO_ESTIMATE


# The score of no signal is round() of an empty sum: the int 0, kept as it always was.
_NO_ESTIMATE = ComplexityEstimate(0, ())


# Each signal is made from counts and term bits, capped (a cap has two decimals at most, so it
# needs no round(), which is slow for a float: it goes through the decimal digits). Counts
# repeat from text to text, and so do the few terms a text holds of each group.
def _signal(name: str, points: float, detail: str) -> ComplexitySignal:
    cap = _CAPS[name]
    return ComplexitySignal(name, cap if points > cap else round(points, 2), detail)


@lru_cache(maxsize=4096)
def _length_signal(token_count: int) -> ComplexitySignal:
    # Log scale: every doubling past 20 tokens adds one point (40: 1, 80: 2, 160: 3, 320: 4).
    return _signal("length", math.log2(token_count / 20), f"{token_count:,} tokens")


@lru_cache(maxsize=1024)
def _questions_signal(questions: int) -> ComplexitySignal:
    return _signal("questions", 0.5 * questions, _plural(questions, "question"))


@lru_cache(maxsize=4096)
def _steps_signal(items: int, terms: int) -> ComplexitySignal:
    parts = [_plural(items, "list item")] if items else []
    if terms:
        parts.append(_terms_detail(terms))
    return _signal("steps", 0.35 * items + 0.8 * terms.bit_count(), "; ".join(parts))


@lru_cache(maxsize=4096)
def _code_signal(fenced: bool, inline: bool, symbols: int, keywords: int) -> ComplexitySignal:
    points = (
        (2.0 if fenced else 0.0)
        + (0.5 if inline else 0.0)
        + min(1.5, 0.15 * symbols)
        + min(1.2, 0.4 * keywords.bit_count())
    )
    parts = ["fenced code block"] if fenced else []
    if inline:
        parts.append("inline code")
    if symbols:
        parts.append(_plural(symbols, "code symbol"))
    if keywords:
        parts.append(_terms_detail(keywords))
    return _signal("code", points, "; ".join(parts))


@lru_cache(maxsize=4096)
def _numbers_signal(count: int, asks: int) -> ComplexitySignal:
    # A word problem is numbers plus a request to combine them.
    if asks:  # only looked for with two numbers or more
        detail = f"{count:,} numbers, asks for a quantity ({_terms_detail(asks)})"
        return _signal("numbers", 0.45 * count + 0.8, detail)
    return _signal("numbers", 0.45 * count, _plural(count, "number"))


@lru_cache(maxsize=1024)
def _tables_signal(rows: int) -> ComplexitySignal:
    return _signal("tables", 0.5 + 0.15 * rows, _plural(rows, "table row"))


@lru_cache(maxsize=4096)
def _reasoning_signal(terms: int) -> ComplexitySignal:
    return _signal("reasoning", 0.7 * _VOCABULARY.weight_of(terms), _terms_detail(terms))


@lru_cache(maxsize=4096)
def _constraints_signal(limits: int, terms: int) -> ComplexitySignal:
    parts = [_plural(limits, "length limit")] if limits else []
    if terms:
        parts.append(_terms_detail(terms))
    points = 0.5 * _VOCABULARY.weight_of(terms) + 0.6 * limits
    return _signal("constraints", points, "; ".join(parts))


def _terms_detail(terms: int) -> str:
    shown = _VOCABULARY.first_terms(terms, 4)
    count = terms.bit_count()
    return ", ".join(shown) + (f" +{count - 4} more" if count > 4 else "")


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _text_counts(text: str, scan: TextScan, units: frozenset[bytes]) -> tuple[int, ...]:
    """Return (questions, backticks, fences) of the whole text, then (digit runs, code symbols,
    list items, table rows, length limits) of the window; routing/complexity_scan.pyx, when
    compiled, gives the same in one pass."""
    questions = 0
    if "?" in text:  # the last "?" of a run counts: without "??" that is every one
        questions = text.count("?") if "??" not in text else len(_QUESTION.findall(text))
    ticks = text.count("`") if "`" in text else 0
    fences = text.count("```") if ticks >= 3 else 0
    window, data = scan.window, scan.data
    digit_runs = len(data.translate(_DIGIT_TABLE).split())
    # Braces, empty calls and statement ends: rare in prose, common in most languages. `in`
    # asks the window (a str), which holds the same ASCII characters as its bytes: `b"{" in
    # data` costs ~0.4 µs, as bytes.__contains__ first tries its argument as an int.
    symbols = data.count(b"{") + data.count(b"}") if "{" in window else 0
    if ";" in window:
        symbols += data.count(b";\n")
    if "(" in window:  # one character is found much faster than two
        symbols += data.count(b"()")
    items = rows = limits = 0
    if "\n" in window:
        items = len(_LIST_ITEM.findall(window)) + (_FIRST_LIST_ITEM.match(window) is not None)
        # Markdown rows start or end with a pipe; counts stay cheap on long prose.
        rows = max(data.count(b"|\n"), data.count(b"\n|")) if "|" in window else 0
        # Each delimited row holds three delimiters: skip the regex when they cannot make 3.
        if rows + (data.count(b",") + data.count(b"\t")) // 3 >= 3:
            rows += len(_DELIMITED_ROW.findall(data))
            rows += _FIRST_DELIMITED_ROW.match(data) is not None
    # A length limit needs a number: without digits there is nothing to look for.
    found = units.intersection(scan.hits) if digit_runs else ()
    if found:
        # "150 characters", "3 bullets": a number, one separator, a unit word.
        zeroed = scan.padded.translate(_ZERO_DIGITS)
        limits = sum([zeroed.count(_LIMIT_NEEDLES[unit]) for unit in found])
    return questions, ticks, fences, digit_runs, symbols, items, rows, limits


try:  # compiled by `make install` (scripts/build_kernel.py); the code above gives the same
    from routing.complexity_scan import text_counts
except ImportError:
    text_counts = _text_counts
COUNTS_COMPILED = text_counts is not _text_counts  # else a system check warns (routing.W002)
