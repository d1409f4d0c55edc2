"""Explainable 0-10 complexity score for a prompt, from cheap and deterministic text signals.

Eight signals each add capped points (so no single one dominates) and the total is capped
at 10. Whole-text counts (question marks, code fences) are C-level `str.count`/regex scans;
word-level signals read only the first HEAD_CHARS characters. That keeps the cost flat for
very long prompts (the length signal already covers their size) and makes the score
monotonic: appending text to a prompt never removes a signal, so it never lowers the score.
"""

import math
import re
from dataclasses import dataclass

HEAD_CHARS = 2_000

# Signal caps; they sum to well over 10 so several moderate signals are needed to reach it.
_CAPS = {
    "length": 3.5,
    "code": 3.0,
    "reasoning": 3.0,
    "numbers": 2.5,
    "questions": 2.0,
    "steps": 2.0,
    "constraints": 2.0,
    "tables": 2.0,
}

# Bytes-level normalisation: ASCII letters lowercased, digits kept, everything else (including
# every non-ASCII byte) is a separator, so "Trade-off", "trade off" and "trade‑off" agree.
_WORD_TABLE = bytes(
    c + 32 if 65 <= c <= 90 else c if (97 <= c <= 122 or 48 <= c <= 57) else 32 for c in range(256)
)
_DIGIT_TABLE = bytes(48 if 48 <= c <= 57 else 32 for c in range(256))


@dataclass(frozen=True)
class _Vocabulary:
    words: dict[bytes, tuple[str, float]]  # every single-word form -> (term, weight)
    phrases: tuple[tuple[bytes, bytes, bytes, str, float], ...]  # padded, first, last, term, w
    word_keys: frozenset[bytes]  # so intersecting with the head's words walks the smaller side


def _vocabulary(*groups: tuple[float, str]) -> _Vocabulary:
    """Build a vocabulary from weighted comma-separated terms; single words also match plurals."""
    words: dict[bytes, tuple[str, float]] = {}
    phrases = []
    for weight, terms in groups:
        for term in (t.strip() for t in terms.split(",")):
            parts = term.encode().translate(_WORD_TABLE).split()
            if len(parts) > 1:
                phrases.append((b" " + b" ".join(parts) + b" ", parts[0], parts[-1], term, weight))
            else:
                forms = [parts[0], parts[0] + b"s", parts[0] + b"es"]
                if parts[0].endswith(b"y"):
                    forms.append(parts[0][:-1] + b"ies")
                for form in forms:
                    words.setdefault(form, (term, weight))
    return _Vocabulary(words, tuple(phrases), frozenset(words))


class _Head:
    """The normalised words of the prompt's head, with the joined form built only when needed."""

    __slots__ = ("_joined", "_tokens", "words")

    def __init__(self, tokens: list[bytes]) -> None:
        self._tokens = tokens
        self._joined: bytes | None = None
        self.words = set(tokens)

    def has_phrase(self, padded: bytes) -> bool:
        if self._joined is None:
            self._joined = b" " + b" ".join(self._tokens) + b" "
        return padded in self._joined

    def found(self, vocabulary: _Vocabulary) -> dict[str, float]:
        """Return the distinct vocabulary terms present, with their weights."""
        hits = dict(vocabulary.words[w] for w in self.words.intersection(vocabulary.word_keys))
        for padded, first, last, term, weight in vocabulary.phrases:
            if first in self.words and last in self.words and self.has_phrase(padded):
                hits[term] = weight
        return hits


_REASONING = _vocabulary(
    (
        1.0,
        "analyze, analyse, analysis, analyzing, analysing, analytical, compare, comparison, "
        "contrast, trade-off, tradeoff, strategy, strategies, strategic, prove, proof, derive, "
        "derivation, plan, planning, roadmap, optimize, optimise, optimization, optimisation, "
        "forecast, forecasting, evaluate, evaluation, assess, assessment, justify, prioritize, "
        "prioritise, implication, hypothesis, root cause, pros and cons, recommend, "
        "recommendation, critique, diagnose, scenario, what if, simulate, infer, deduce, "
        "architecture, design a",
    ),
    (
        0.5,
        "therefore, thus, hence, whether, unless, however, although, despite, assuming, "
        "given that, consequently, implies, because, most likely, strongest, weakest, argument, "
        "evidence, valid, conclude, conclusion, reasoning, explain, why, which of the following, "
        "impact, risk, alternative",
    ),
)
_CONSTRAINTS = _vocabulary(
    (
        1.0,
        "must, must not, exactly, at least, at most, no more than, no less than, fewer than, "
        "no longer than, without, do not, don't, never, avoid, strictly, required, requirement, "
        "ensure, make sure, limit, maximum, minimum, within, budget, deadline, word count, "
        "format, bullet points, json, in the style of, should not, constraint, mandatory",
    ),
    (0.5, "only, include, exclude, tone, style, keep it, under, up to, concise"),
)
_STEPS = _vocabulary(
    (
        1.0,
        "step by step, steps, walk me through, break down, break it down, phases, stages, "
        "milestones, firstly, secondly, thirdly, finally, next steps, action plan, checklist, "
        "timeline, outline, multi-part, each part",
    ),
)
_NUMBER_WORDS = _vocabulary(
    (
        1.0,
        "two, three, four, five, six, seven, eight, nine, ten, eleven, twelve, fifteen, twenty, "
        "thirty, forty, fifty, hundred, thousand, million, billion, half, twice, double, triple, "
        "dozen, quarter, percent, percentage",
    ),
)
_QUANTITY_ASKS = _vocabulary(
    (
        1.0,
        "how many, how much, how long, how far, how old, calculate, compute, total, average, sum, "
        "ratio, per, each, remaining, left over, difference, rate",
    ),
)
_CODE_WORDS = _vocabulary(
    (
        1.0,
        "def, elif, lambda, const, println, printf, void, struct, nullptr, namespace, async, "
        "await, typeof, isinstance, kwargs, argv, stdout, stderr, npm, pip, git, sql, regex, "
        "json, api, html, css, javascript, python, typescript, java, php, ruby, golang, kotlin, "
        "bash, docker, kubernetes, django, react, refactor, debug, bug, compile, compiler, "
        "traceback, exception, stack trace, unit test, function, variable, algorithm, runtime, "
        "endpoint, repository, script, database, query, null",
    ),
)

_QUESTION_RUN = re.compile(r"\?+")
# A list item at the start of a line: "1." "2)" "-" "*" "•" "+", then text.
_LIST_ITEM = re.compile(r"\n[ \t]*(?:\d{1,2}[.)]|[-*•+])[ \t]+\S")
_TABLE_ROW = re.compile(
    rb"\n[^\n|]*\|[^\n|]*\||\n[^\n,\t]{1,40}[,\t][^\n,\t]{0,40}[,\t]"  # pipes, or CSV/TSV
)
_CODE_SYNTAX = re.compile(rb"[{}]|==|!=|=>|->|::|\(\)|&&|\|\||</|;\n")
_LENGTH_LIMIT = re.compile(
    rb"\d+ (?:word|character|char|sentence|paragraph|bullet|line|hashtag|emoji|item|token|page"
    rb"|tweet|slide)s?\b"
)


@dataclass(frozen=True)
class ComplexitySignal:
    name: str
    points: float
    detail: str


@dataclass(frozen=True)
class ComplexityEstimate:
    score: float
    signals: tuple[ComplexitySignal, ...]


def estimate_complexity(text: str, *, token_count: int) -> ComplexityEstimate:
    """Score 0-10 from the prompt text (user-visible messages joined) and its token count."""
    head_text = text[:HEAD_CHARS]
    data = head_text.encode("utf-8", "surrogatepass")
    normalised = data.translate(_WORD_TABLE)
    head = _Head(normalised.split())
    raw = {
        "length": _length_signal(token_count),
        "questions": _questions_signal(text),
        "steps": _steps_signal(head_text, head),
        "code": _code_signal(text, data, head),
        "numbers": _numbers_signal(data, head),
        "tables": _tables_signal(data),
        "reasoning": _terms_signal(head.found(_REASONING), 0.7),
        "constraints": _constraints_signal(normalised, head),
    }
    signals = []
    for name, (points, detail) in raw.items():
        points = round(min(points, _CAPS[name]), 2)
        if points > 0:
            signals.append(ComplexitySignal(name, points, detail))
    signals.sort(key=lambda s: -s.points)  # stable: ties keep the order above
    score = round(min(10.0, sum(s.points for s in signals)), 1)
    return ComplexityEstimate(score=score, signals=tuple(signals))


def _length_signal(token_count: int) -> tuple[float, str]:
    tokens = max(0, token_count)
    # Log scale: every doubling past 16 tokens adds the same points.
    points = 0.75 * math.log2(tokens / 16) if tokens > 16 else 0.0
    return points, f"{tokens:,} tokens"


def _questions_signal(text: str) -> tuple[float, str]:
    # "???" is one question, not three.
    questions = sum(1 for _ in _QUESTION_RUN.finditer(text))
    return 0.5 * questions, _plural(questions, "question")


def _steps_signal(head_text: str, head: _Head) -> tuple[float, str]:
    items = len(_LIST_ITEM.findall("\n" + head_text))
    terms = head.found(_STEPS)
    parts = [_plural(items, "list item")] if items else []
    if terms:
        parts.append(_terms_detail(terms))
    return 0.35 * items + 0.8 * len(terms), "; ".join(parts)


def _code_signal(text: str, data: bytes, head: _Head) -> tuple[float, str]:
    fences = text.count("```")
    inline = text.count("`") - 3 * fences
    syntax = len(_CODE_SYNTAX.findall(data))
    keywords = head.found(_CODE_WORDS)
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
    return points, "; ".join(parts)


def _numbers_signal(data: bytes, head: _Head) -> tuple[float, str]:
    count = len(data.translate(_DIGIT_TABLE).split()) + len(head.found(_NUMBER_WORDS))
    asks = head.found(_QUANTITY_ASKS) if count >= 2 else {}
    # A word problem is numbers plus a request to combine them.
    points = 0.4 * count + (0.6 if asks else 0.0)
    detail = _plural(count, "number")
    if asks:
        detail += f", asks for a quantity ({_terms_detail(asks)})"
    return points, detail


def _tables_signal(data: bytes) -> tuple[float, str]:
    rows = len(_TABLE_ROW.findall(b"\n" + data))
    return (0.5 + 0.15 * rows if rows >= 2 else 0.0), _plural(rows, "table row")


def _constraints_signal(normalised: bytes, head: _Head) -> tuple[float, str]:
    terms = head.found(_CONSTRAINTS)
    limits = len(_LENGTH_LIMIT.findall(normalised))
    points, detail = _terms_signal(terms, 0.5)
    if limits:
        points += 0.6 * limits
        detail = "; ".join(filter(None, (_plural(limits, "length limit"), detail)))
    return points, detail


def _terms_signal(terms: dict[str, float], per_weight: float) -> tuple[float, str]:
    return per_weight * sum(terms.values()), _terms_detail(terms)


def _terms_detail(terms: dict[str, float]) -> str:
    shown = sorted(terms, key=lambda t: (-terms[t], t))
    more = f" +{len(shown) - 4} more" if len(shown) > 4 else ""
    return ", ".join(shown[:4]) + more


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"
