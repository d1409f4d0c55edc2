"""Keyword classifier for the task category, and the critical-trigger lookup.

Matching is on whole words, case-insensitive: ASCII letters are lowercased, digits kept, and
every other character (punctuation, spaces, any non-ASCII character such as an emoji or a
curly quote) separates words. A term is a word or a phrase of consecutive words, normalised
the same way, so "trade-off" matches "trade off" and "don't" matches "don’t". A single-word
term also matches its regular inflections: -s, -es, -ed, -ing, with the usual spelling changes
("refund": refunds, refunded; "sue": sued, suing; "flag": flagged; "reply": replies). Phrases
match as written. Keywords should therefore be plain ASCII words of three letters or more
(short ones collide: "rat" would also match "rating").
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType

# Prior mass added to the denominator of the confidence: thin evidence is never confident.
_PRIOR = 1.0

_VOWELS = b"aeiou"
_WORD_TABLE = bytes(
    c + 32 if 65 <= c <= 90 else c if (97 <= c <= 122 or 48 <= c <= 57) else 32 for c in range(256)
)


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


@dataclass(frozen=True)
class _Terms:
    """Terms compiled for lookup: every single-word form and every phrase, each to its owners."""

    words: dict[bytes, tuple[tuple[int, str], ...]]  # word form -> (owner index, term)
    # A phrase is looked up by its longest word, then confirmed in the space-joined text.
    phrases: dict[bytes, tuple[tuple[frozenset[bytes], bytes, int, str], ...]]
    # Every word form and every word of every phrase: one set intersection with the text's
    # tokens finds all candidates (cheaper than first building a set of the longer text).
    keys: frozenset[bytes]


class _Text:
    """The normalised tokens of one text; the space-joined form is built only for phrases."""

    __slots__ = ("_joined", "tokens")

    def __init__(self, text: str) -> None:
        self.tokens = text.encode("utf-8", "surrogatepass").translate(_WORD_TABLE).split()
        self._joined: bytes | None = None

    def has_phrase(self, padded: bytes) -> bool:
        if self._joined is None:
            self._joined = b" " + b" ".join(self.tokens) + b" "
        return padded in self._joined


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
    found = _match(_compile_categories(categories), _text_index(text))
    scores = [0.0] * len(categories)
    matched: list[list[tuple[float, str]]] = [[] for _ in categories]
    for owner, term in sorted(found):  # a fixed order keeps float sums reproducible
        weight = categories[owner].keywords[term]
        scores[owner] += weight
        matched[owner].append((weight, term))
    total = sum(scores)
    if total <= 0:
        return Classification(default_category, 0.0, (), fell_back=True)
    best = max(range(len(categories)), key=lambda i: (scores[i], len(matched[i]), -i))
    confidence = round(scores[best] / (total + _PRIOR), 3)
    if confidence >= min_confidence:
        terms = _by_weight(matched[best])
        return Classification(categories[best].slug, confidence, terms, fell_back=False)
    default = next((i for i, c in enumerate(categories) if c.slug == default_category), None)
    terms = () if default is None else _by_weight(matched[default])
    return Classification(default_category, confidence, terms, fell_back=True)


def find_trigger(text: str, terms: Sequence[str]) -> str | None:
    """Return the first critical trigger term found in the text (whole words, case-insensitive).

    "First" follows the order of `terms`, so a policy can list its most serious terms first.
    """
    if not terms:
        return None
    found = _match(_compile_triggers(tuple(terms)), _text_index(text))
    return min(found)[1] if found else None


def _by_weight(matched: list[tuple[float, str]]) -> tuple[str, ...]:
    return tuple(term for _, term in sorted(matched, key=lambda m: (-m[0], m[1])))


def _match(compiled: _Terms, text: _Text) -> set[tuple[int, str]]:
    """Return (owner index, term) for every compiled term present in the text."""
    found = set()
    hits = compiled.keys.intersection(text.tokens)
    for key in hits:
        found.update(compiled.words.get(key, ()))
        for phrase_words, padded, owner, term in compiled.phrases.get(key, ()):
            if phrase_words <= hits and text.has_phrase(padded):
                found.add((owner, term))
    return found


# The same prompt goes through classify() and then find_trigger(): normalise it only once.
@lru_cache(maxsize=8)
def _text_index(text: str) -> _Text:
    return _Text(text)


@lru_cache(maxsize=32)
def _compile_categories(categories: tuple[CategoryKeywords, ...]) -> _Terms:
    return _compile(
        (owner, term)
        for owner, category in enumerate(categories)
        for term, weight in category.keywords.items()
        if weight > 0
    )


@lru_cache(maxsize=64)
def _compile_triggers(terms: tuple[str, ...]) -> _Terms:
    # The owner is the term's position, so the lowest match is the first term listed.
    return _compile(enumerate(terms))


def _compile(owned_terms: Iterable[tuple[int, str]]) -> _Terms:
    words: dict[bytes, list[tuple[int, str]]] = {}
    phrases: dict[bytes, list[tuple[frozenset[bytes], bytes, int, str]]] = {}
    phrase_words: set[bytes] = set()
    for owner, term in owned_terms:
        parts = term.encode("utf-8", "surrogatepass").translate(_WORD_TABLE).split()
        if len(parts) == 1:
            for form in _inflections(parts[0]):
                words.setdefault(form, []).append((owner, term))
        elif parts:
            padded = b" " + b" ".join(parts) + b" "
            entry = (frozenset(parts), padded, owner, term)
            phrases.setdefault(max(parts, key=len), []).append(entry)
            phrase_words.update(parts)
    return _Terms(
        words={w: tuple(owners) for w, owners in words.items()},
        phrases={k: tuple(candidates) for k, candidates in phrases.items()},
        keys=frozenset(words) | phrase_words,
    )


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
