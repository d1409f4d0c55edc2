"""Explainable 0-10 complexity score for a prompt, from cheap and deterministic text signals.

Eight signals each add capped points (so no single one dominates) and the total is capped
at 10. Question marks and code fences are counted over the whole text; the other signals read
the window that the classifier reads too (routing.text_scan.scan_text: at most
WINDOW_HEAD_CHARS + WINDOW_TAIL_CHARS characters, the start, where instructions usually are,
and the end, where the question usually is, after pasted material), normalised once for both,
and the vocabulary is found in the same pass as the category keywords.
The length signal already accounts for the rest, and the cost stays flat for 100k-token
prompts. For a text that fits in the window, appending more text never lowers the score.
"""

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from operator import itemgetter
from types import MappingProxyType

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
    entries: dict[bytes, tuple[tuple[str, str, float], ...]]  # term -> (group, term, weight)
    keys: frozenset[bytes]  # the keys of `entries`


def _vocabulary(groups: dict[str, tuple[tuple[float, str], ...]]) -> _Vocabulary:
    entries: dict[bytes, list[tuple[str, str, float]]] = {}
    for group, weighted in groups.items():
        for weight, terms in weighted:
            for term in (t.strip() for t in terms.split(",")):
                words = term_words(term)
                forms = {b" ".join(words)}
                if len(words) == 1:
                    forms |= {words[0] + b"s", words[0] + b"es"}
                    if words[0].endswith(b"y"):
                        forms.add(words[0][:-1] + b"ies")
                for form in forms:
                    entries.setdefault(form, []).append((group, term, weight))
    return _Vocabulary(
        entries={form: tuple(found) for form, found in entries.items()},
        keys=frozenset(entries),
    )


_VOCABULARY = _vocabulary(_TERMS)
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


@dataclass(frozen=True)
class ComplexitySignal:
    name: str  # stable: length, questions, steps, code, numbers, tables, reasoning, constraints
    points: float  # contribution to the score, already capped
    detail: str  # for people, e.g. "1,240 tokens", "3 questions"


@dataclass(frozen=True)
class ComplexityEstimate:
    score: float  # 0.0..10.0, one decimal: the capped sum of the signals' points
    signals: tuple[ComplexitySignal, ...]  # only those that contributed, most points first


_POINTS = itemgetter(1)  # a signal's points, in (name, points, detail)


def estimate_complexity(text: str, *, token_count: int) -> ComplexityEstimate:
    """Score 0-10 from the prompt text (user-visible messages joined) and its token count."""
    scan = scan_text(text)
    found = _found(scan)
    digit_runs = len(scan.data.translate(_DIGIT_TABLE).split())
    raw = (
        _length_signal(token_count),
        _questions_signal(text),
        _steps_signal(scan.window, found["steps"]),
        _code_signal(text, scan.window, scan.data, found["code_words"]),
        _numbers_signal(digit_runs, found["number_words"], found["quantity_asks"]),
        _tables_signal(scan.window, scan.data),
        _terms_signal("reasoning", found["reasoning"], 0.7),
        _constraints_signal(scan, digit_runs, found["constraints"]),
    )
    kept = []
    for signal in raw:
        if signal is not None:
            name, points, detail = signal
            cap = _CAPS[name]
            # A cap has two decimals at most, so it needs no round(), which is slow for a float
            # (it goes through the decimal digits).
            points = cap if points > cap else round(points, 2)
            if points > 0:
                kept.append((name, points, detail))
    # Sorted as plain tuples, then made dataclasses: sorting the objects reads an attribute
    # per comparison. The sort is stable: ties keep the order above.
    kept.sort(key=_POINTS, reverse=True)
    total = sum([points for _, points, _ in kept])
    signals = tuple([ComplexitySignal(name, points, detail) for name, points, detail in kept])
    return ComplexityEstimate(10.0 if total > 10.0 else round(total, 1), signals)


# What a text without any vocabulary term finds (most chat messages): read-only, shared.
_NOTHING_FOUND = MappingProxyType({group: MappingProxyType({}) for group in _TERMS})


def _found(scan: TextScan) -> Mapping[str, Mapping[str, float]]:
    """Return, per vocabulary group, the distinct terms present with their weights."""
    keys = _VOCABULARY.keys.intersection(scan.hits)
    if not keys:
        return _NOTHING_FOUND
    found: dict[str, dict[str, float]] = {group: {} for group in _TERMS}
    for key in keys:
        for group, term, weight in _VOCABULARY.entries[key]:
            found[group][term] = weight
    return found


# Each signal returns (name, points, detail), or None when the text shows nothing of it.
_Raw = tuple[str, float, str] | None


@lru_cache(maxsize=4096)  # token counts repeat; the log and the formatting need not
def _length_signal(token_count: int) -> _Raw:
    if token_count <= 20:
        return None
    # Log scale: every doubling past 20 tokens adds one point (40: 1, 80: 2, 160: 3, 320: 4).
    return "length", math.log2(token_count / 20), f"{token_count:,} tokens"


def _questions_signal(text: str) -> _Raw:
    if "?" not in text:
        return None
    questions = len(_QUESTION.findall(text))
    return "questions", 0.5 * questions, _plural(questions, "question")


def _steps_signal(window: str, terms: Mapping[str, float]) -> _Raw:
    items = 0
    if "\n" in window:
        items = len(_LIST_ITEM.findall(window)) + (_FIRST_LIST_ITEM.match(window) is not None)
    if not (items or terms):
        return None
    parts = [_plural(items, "list item")] if items else []
    if terms:
        parts.append(_terms_detail(terms))
    return "steps", 0.35 * items + 0.8 * len(terms), "; ".join(parts)


def _code_signal(text: str, window: str, data: bytes, keywords: Mapping[str, float]) -> _Raw:
    ticks = text.count("`") if "`" in text else 0
    fences = text.count("```") if ticks >= 3 else 0
    inline = ticks - 3 * fences
    # Braces, empty calls and statement ends: rare in prose, common in most languages. `in`
    # asks the window (a str), which holds the same ASCII characters as its bytes: `b"{" in
    # data` costs ~0.4 µs, as bytes.__contains__ first tries its argument as an int.
    syntax = data.count(b"{") + data.count(b"}") if "{" in window else 0
    if ";" in window:
        syntax += data.count(b";\n")
    if "(" in window:  # one character is found much faster than two
        syntax += data.count(b"()")
    if not (fences or inline >= 2 or syntax or keywords):
        return None
    points = (
        (2.0 if fences else 0.0)
        + (0.5 if inline >= 2 else 0.0)
        + min(1.5, 0.15 * syntax)
        + min(1.2, 0.4 * len(keywords))
    )
    parts = ["fenced code block"] if fences else []
    if inline >= 2:
        parts.append("inline code")
    if syntax:
        parts.append(_plural(syntax, "code symbol"))
    if keywords:
        parts.append(_terms_detail(keywords))
    return "code", points, "; ".join(parts)


def _numbers_signal(
    digits: int, number_words: Mapping[str, float], asks: Mapping[str, float]
) -> _Raw:
    count = digits + len(number_words)
    if not count:
        return None
    # A word problem is numbers plus a request to combine them.
    if count >= 2 and asks:
        detail = f"{count:,} numbers, asks for a quantity ({_terms_detail(asks)})"
        return "numbers", 0.45 * count + 0.8, detail
    return "numbers", 0.45 * count, _plural(count, "number")


def _tables_signal(window: str, data: bytes) -> _Raw:
    if "\n" not in window:  # the window, not its bytes, is asked: see _code_signal
        return None
    # Markdown rows start or end with a pipe; counts stay cheap on long prose.
    rows = max(data.count(b"|\n"), data.count(b"\n|")) if "|" in window else 0
    # Each delimited row holds three delimiters: skip the regex when they cannot make 3 rows.
    if rows + (data.count(b",") + data.count(b"\t")) // 3 >= 3:
        rows += len(_DELIMITED_ROW.findall(data)) + (_FIRST_DELIMITED_ROW.match(data) is not None)
    if rows < 3:
        return None
    return "tables", 0.5 + 0.15 * rows, _plural(rows, "table row")


def _constraints_signal(scan: TextScan, digit_runs: int, terms: Mapping[str, float]) -> _Raw:
    limits = 0
    # A length limit needs a number: without digits there is nothing to look for.
    units = _LIMIT_UNITS.intersection(scan.hits) if digit_runs else ()
    if units:
        # "150 characters", "3 bullets": a number, one separator, a unit word.
        zeroed = scan.padded.translate(_ZERO_DIGITS)
        limits = sum([zeroed.count(_LIMIT_NEEDLES[unit]) for unit in units])
    if not (limits or terms):
        return None
    parts = [_plural(limits, "length limit")] if limits else []
    if terms:
        parts.append(_terms_detail(terms))
    return "constraints", 0.5 * sum(terms.values()) + 0.6 * limits, "; ".join(parts)


def _terms_signal(name: str, terms: Mapping[str, float], per_weight: float) -> _Raw:
    if not terms:
        return None
    return name, per_weight * sum(terms.values()), _terms_detail(terms)


def _terms_detail(terms: Mapping[str, float]) -> str:
    shown = sorted(terms)
    more = f" +{len(shown) - 4} more" if len(shown) > 4 else ""
    return ", ".join(shown[:4]) + more


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"
