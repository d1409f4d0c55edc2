"""Keyword classifier for the task category, and the critical-trigger lookup.

Both read the normalised text of routing.text_scan (whole words, case-insensitive: "trade-off"
matches "trade off"). A single-word term also matches its regular inflections: -s, -es, -ed,
-ing, with the usual spelling changes ("refund": refunds, refunded; "sue": sued, suing;
"flag": flagged; "reply": replies). Phrases match as written. Keywords should therefore be
plain ASCII words of three letters or more (short ones collide: "rat" would also match
"rating").

Category keywords are found in the bounded window of the text, in the one pass of the shared
automaton that also finds the complexity vocabulary (routing.text_scan). Critical triggers
are the exception: a request that mentions one anywhere must reach the premium tier, so they
are looked for in the whole text. The triggers of a category get their own small automaton
over the whole text, which only finds where a word may be a trigger; that word is then read
whole.
"""

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType

from ahocorasick_rs import BytesAhoCorasick, MatchKind

from routing.text_scan import register_terms, reuse_last_for_same_object, scan_text, term_words

# Prior mass added to the denominator of the confidence: thin evidence is never confident.
_PRIOR = 1.0

_VOWELS = b"aeiou"


@dataclass(frozen=True)
class CategoryKeywords:
    slug: str
    keywords: Mapping[str, float]
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # A private read-only copy makes the instance immutable, so it can key the compiled
        # pattern cache; the hash is computed once, not on every classify() call.
        frozen = MappingProxyType(dict(self.keywords))
        object.__setattr__(self, "keywords", frozen)
        object.__setattr__(self, "_hash", hash((self.slug, frozenset(frozen.items()))))

    def __hash__(self) -> int:
        return self._hash


@dataclass(frozen=True)
class Classification:
    category: str
    confidence: float
    matched: tuple[str, ...]
    fell_back: bool


def classify(
    text: str,
    *,
    categories: Sequence[CategoryKeywords],
    default_category: str,
    min_confidence: float,
) -> Classification:
    """Pick the category whose keyword weights best match the text, with a confidence.

    A category's score is the sum of the weights of its distinct terms found in the text
    (presence, not frequency, so one repeated word cannot dominate); non-positive weights are
    ignored. The best score wins; ties go to more matched terms, then to the earlier category.
    confidence = best score / (sum of all categories' scores + 1): the +1 is a prior, so a
    single term of weight 1 gives 0.5, two equal categories at most 1/3 each, and a clear
    winner approaches 1. When nothing matches or confidence < min_confidence the result is
    default_category with fell_back=True. `matched` always lists the matched terms of the
    returned category (heaviest first), so on a fallback they are the default category's.
    """
    categories = tuple(categories)
    compiled = _compiled_categories(categories)
    entries = compiled.entries
    ranks = set().union(*[entries[key] for key in compiled.keys.intersection(scan_text(text).hits)])
    if not ranks:  # weights are positive, so no term means no score at all
        return Classification(default_category, 0.0, (), fell_back=True)
    # In (owner, keyword, weight) order: a fixed order keeps float sums reproducible.
    found = [compiled.keywords[rank] for rank in sorted(ranks)]
    scores = [0.0] * len(categories)
    counts = [0] * len(categories)
    for owner, _term, weight in found:
        scores[owner] += weight
        counts[owner] += 1
    top = max(scores)
    if scores.count(top) == 1:  # the usual case: one category has the highest score
        best = scores.index(top)
    else:  # a tie: then most terms, then the earliest category
        best = -max(zip(scores, counts, range(0, -len(categories), -1), strict=True))[2]
    confidence = round(top / (sum(scores) + _PRIOR), 3)
    if confidence >= min_confidence:
        terms = _by_weight(found, best)
        return Classification(categories[best].slug, confidence, terms, fell_back=False)
    default = compiled.owners.get(default_category)
    terms = () if default is None else _by_weight(found, default)
    return Classification(default_category, confidence, terms, fell_back=True)


def find_trigger(text: str, terms: Sequence[str]) -> str | None:
    """Return the first critical trigger term found in the text (whole words, case-insensitive).

    "First" follows the order of `terms`, so a policy can list its most serious terms first.
    The whole text is read, however long.
    """
    if not terms:
        return None
    terms = tuple(terms)
    compiled = _compiled_triggers(terms)
    if compiled.automaton is None:
        return None
    padded = scan_text(text).whole
    starts = compiled.starts
    best = len(terms)
    # A hit may start a word that is a trigger (or starts one): that word is then read whole.
    for _, start, end in compiled.automaton.find_matches_as_indexes(padded):
        if padded[start] == 32:  # a short prefix, matched with the space before it
            start += 1
        elif padded[start - 1] != 32:  # inside a word
            continue
        stop = padded.find(b" ", end)
        for owner, rest in starts.get(padded[start:stop], ()):
            if owner < best and (rest is None or rest.match(padded, stop)):
                best = owner
    return terms[best] if best < len(terms) else None


def _by_weight(found: list[tuple[int, str, float]], owner: int) -> tuple[str, ...]:
    """Return the owner's terms, heaviest first, then alphabetically."""
    mine = [(-weight, term) for o, term, weight in found if o == owner]
    mine.sort()
    return tuple([term for _, term in mine])  # a list comprehension: cheaper than a generator


@dataclass(frozen=True)
class _Categories:
    """Category keywords compiled for lookup in TextScan.hits."""

    entries: dict[bytes, tuple[int, ...]]  # term -> the ranks of its (owner, keyword, weight)
    keys: frozenset[bytes]  # the keys of `entries`
    # Every (owner, keyword, weight), sorted, so a rank stands for one: a set of small ints
    # hashes and sorts faster than a set of these tuples.
    keywords: tuple[tuple[int, str, float], ...]
    owners: dict[str, int]  # category slug -> owner index


# The engine passes the same policy objects decision after decision: the last ones compiled
# are found by identity first, without hashing their contents (then by the lru_cache).
@reuse_last_for_same_object
@lru_cache(maxsize=32)
def _compiled_categories(categories: tuple[CategoryKeywords, ...]) -> _Categories:
    entries: dict[bytes, list[tuple[int, str, float]]] = {}
    owners: dict[str, int] = {}
    for owner, category in enumerate(categories):
        owners.setdefault(category.slug, owner)
        for term, weight in category.keywords.items():
            words = term_words(term)
            if weight <= 0 or not words:
                continue
            forms = _inflections(words[0]) if len(words) == 1 else {b" ".join(words)}
            for form in forms:
                entries.setdefault(form, []).append((owner, term, weight))
    register_terms(frozenset(entries))
    keywords = sorted({keyword for found in entries.values() for keyword in found})
    rank = {keyword: i for i, keyword in enumerate(keywords)}
    return _Categories(
        entries={key: tuple(rank[keyword] for keyword in found) for key, found in entries.items()},
        keys=frozenset(entries),
        keywords=tuple(keywords),
        owners=owners,
    )


@dataclass(frozen=True)
class _Triggers:
    """Trigger terms compiled for one pass over a whole text."""

    # Finds the beginnings of the words that may be triggers or start one (also inside words).
    automaton: BytesAhoCorasick | None
    # A whole word -> (position of the term in the list, None for a one-word term or the
    # regular expression the text after the word must match for a phrase).
    starts: dict[bytes, tuple[tuple[int, re.Pattern[bytes] | None], ...]]


@reuse_last_for_same_object
@lru_cache(maxsize=64)
def _compiled_triggers(terms: tuple[str, ...]) -> _Triggers:
    starts: dict[bytes, list[tuple[int, re.Pattern[bytes] | None]]] = {}
    prefixes: set[bytes] = set()
    for owner, term in enumerate(terms):
        words = term_words(term)
        if len(words) == 1:
            forms = _inflections(words[0])
            for form in forms:
                starts.setdefault(form, []).append((owner, None))
            prefixes.update(form for form in forms if not form.startswith(words[0]))
            prefixes.add(words[0])
        elif words:
            starts.setdefault(words[0], []).append((owner, re.compile(_rest_pattern(words))))
            prefixes.add(words[0])
    # A prefix that starts with another one adds no hit: the shorter one already stops at the
    # word. Fewer patterns keep the automaton on its fastest (SIMD) search, up to about 64, and
    # so does leaving out the space before each (a space is everywhere, a word's letters not),
    # except before the shortest prefixes, which would also stop inside many words ("sue" in
    # "issue"). A leftmost-longest match holds no space but maybe the one it starts with, so
    # none hides the start of the next word: every word start is still seen.
    kept = sorted(p for p in prefixes if not any(p.startswith(q) for q in prefixes if q != p))
    if not kept:
        return _Triggers(None, {})
    patterns = [b" " + p if len(p) <= 3 else p for p in kept]
    automaton = BytesAhoCorasick(patterns, matchkind=MatchKind.LeftmostLongest)
    return _Triggers(automaton, {word: tuple(found) for word, found in starts.items()})


def _rest_pattern(words: list[bytes]) -> bytes:
    """Return a pattern for the words after a phrase's first one, matched where it ends."""
    return b" +" + b" +".join(map(re.escape, words[1:])) + b" "


def _inflections(word: bytes) -> set[bytes]:
    """Return the word with its regular inflections (-s, -es, -ed, -ing and their spellings)."""
    if word.endswith((b"s", b"x", b"z", b"ch", b"sh")):
        return {word, word + b"es", word + b"ed", word + b"ing"}  # tax: taxes
    if word.endswith(b"o"):
        return {word, word + b"s", word + b"es", word + b"ed", word + b"ing"}  # promo: promos
    if word.endswith(b"ie"):
        return {word, word + b"s", word + b"d", word[:-2] + b"ying"}  # die: died, dying
    if word.endswith(b"e"):
        return {word, word + b"s", word + b"d", word[:-1] + b"ing"}  # hate: hated, hating
    forms = {word, word + b"s", word + b"ed", word + b"ing"}
    if word.endswith(b"y") and len(word) > 2 and word[-2] not in _VOWELS:
        forms |= {word[:-1] + b"ies", word[:-1] + b"ied"}  # reply: replies, replied
    elif len(word) >= 3 and word[-1] not in _VOWELS + b"wxy" and word[-2] in _VOWELS:
        if word[-3] not in _VOWELS:
            forms |= {word + word[-1:] + b"ed", word + word[-1:] + b"ing"}  # flag: flagged
    return forms
