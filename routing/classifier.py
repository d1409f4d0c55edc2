"""Keyword classifier for the task category, and the critical-trigger lookup.

Matching is on whole words, case-insensitive: ASCII letters are lowercased, digits kept, and
every other character (punctuation, spaces, any non-ASCII character such as an emoji or a
curly quote) separates words. A term is a word or a phrase of consecutive words, normalised
the same way, so "trade-off" matches "trade off" and "don't" matches "don’t". A single-word
term also matches its regular inflections: -s, -es, -ed, -ing, with the usual spelling changes
("refund": refunds, refunded; "sue": sued, suing; "flag": flagged; "reply": replies). Phrases
match as written. Keywords should therefore be plain ASCII words of three letters or more
(short ones collide: "rat" would also match "rating").

Category keywords and the complexity vocabulary read the same bounded window of the text: the
first WINDOW_HEAD_CHARS and the last WINDOW_TAIL_CHARS characters. The start is where a prompt
says what it wants (role, instructions), the end is where the question is after pasted
material, and in a conversation the end is the latest message. On the evaluation data
(scripts/eval_router.py) classifying the window instead of the whole text moves accuracy from
63.3% to 63.1%, while the cost stays flat from a chat message to a 100k-token prompt. Critical
triggers are the exception: a request that mentions one anywhere must reach the premium tier,
so when the window has none the rest of the text is read too (about 30 µs more for a
1,000-token prompt).
"""

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType

WINDOW_HEAD_CHARS = 800
WINDOW_TAIL_CHARS = 400
_EDGE_OVERLAP = 80  # longer than any trigger phrase

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

    words: dict[bytes, tuple[tuple[int, str, float], ...]]  # form -> (owner, term, weight)
    # A phrase is looked up by its longest word, then confirmed by TextScan.has_phrase().
    phrases: dict[bytes, tuple[tuple[frozenset[bytes], bytes, tuple[int, str, float]], ...]]
    forms: frozenset[bytes]  # the keys of `words`
    phrase_keys: frozenset[bytes]  # the keys of `phrases`
    owners: dict[str, int]  # category slug -> owner index (empty for triggers)


# Every word some compiled vocabulary looks up (category keywords, triggers, the complexity
# vocabulary). A scan intersects the window's tokens with it once, and each lookup then only
# intersects its own words with those few hits. It only grows, by the words of each newly
# compiled vocabulary: a few thousand words over the life of a process.
_lexicon: frozenset[bytes] = frozenset()
_lexicon_lock = threading.Lock()  # two compiles at once must not lose each other's words


def register_words(words: frozenset[bytes]) -> None:
    """Add a vocabulary's words to those every scan looks up (TextScan.hits)."""
    global _lexicon
    with _lexicon_lock:
        if not words <= _lexicon:
            _lexicon = _lexicon | words


class TextScan:
    """One pass over the window of a text, shared by every keyword lookup of one decision."""

    __slots__ = ("_hits", "_joined", "data", "normalised", "tokens", "window")

    def __init__(self, text: str, *, whole: bool = False) -> None:
        window = text
        if not whole and len(text) > WINDOW_HEAD_CHARS + WINDOW_TAIL_CHARS:
            window = text[:WINDOW_HEAD_CHARS] + "\n" + text[-WINDOW_TAIL_CHARS:]
        self.window = window
        self.data = window.encode("utf-8", "surrogatepass")
        self.normalised = self.data.translate(_WORD_TABLE)
        self.tokens = self.normalised.split()
        lexicon = _lexicon
        self._hits = (lexicon, lexicon.intersection(self.tokens))
        self._joined: bytes | None = None

    @property
    def hits(self) -> frozenset[bytes]:
        """Return the registered words that occur in the window."""
        lexicon, hits = self._hits
        if lexicon is not _lexicon:  # a vocabulary was registered after this scan: look again
            lexicon = _lexicon
            hits = lexicon.intersection(self.tokens)
            self._hits = (lexicon, hits)
        return hits

    def has_phrase(self, phrase: bytes) -> bool:
        """Return whether a phrase from compile_phrase() occurs in the window, as whole words."""
        if self._joined is None:
            self._joined = b" " + b" ".join(self.tokens) + b" "
        return next_word_at(self._joined, phrase) != -1


def compile_phrase(words: list[bytes]) -> bytes:
    """Return normalised words, two or more, as TextScan.has_phrase() looks them up."""
    return b" " + b" ".join(words)


def next_word_at(text: bytes, needle: bytes, start: int = 0) -> int:
    """Return where the needle next occurs followed by a space in the text, or -1.

    Searching for the needle alone and then checking the space is several times faster than
    searching for needle + b" ": the search skips ahead on the needle's last byte, and a
    space matches almost everywhere in normalised text.
    """
    at = text.find(needle, start)
    while at != -1 and text[at + len(needle) : at + len(needle) + 1] != b" ":
        at = text.find(needle, at + 1)
    return at


# The engine hands the same string to classify(), estimate_complexity() and find_trigger():
# the last scan is reused when the very same object comes back (an identity check, so a long
# text is not even hashed), and any other text is scanned afresh.
_last_scan: tuple[str, TextScan] | None = None


def scan_text(text: str) -> TextScan:
    """Return the normalised window of the text, reusing the previous call's for the same text."""
    global _last_scan
    last = _last_scan
    if last is not None and last[0] is text:
        return last[1]
    scan = TextScan(text)
    _last_scan = (text, scan)
    return scan


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
    compiled = _compile_categories(categories)
    found = _match(compiled, scan_text(text))
    if not found:  # weights are positive, so no term means no score at all
        return Classification(default_category, 0.0, (), fell_back=True)
    scores = [0.0] * len(categories)
    counts = [0] * len(categories)
    for owner, _term, weight in sorted(found):  # a fixed order keeps float sums reproducible
        scores[owner] += weight
        counts[owner] += 1
    # Highest score, then most terms, then the earliest category.
    best = -max(zip(scores, counts, range(0, -len(categories), -1), strict=True))[2]
    confidence = round(scores[best] / (sum(scores) + _PRIOR), 3)
    if confidence >= min_confidence:
        terms = _by_weight(found, best)
        return Classification(categories[best].slug, confidence, terms, fell_back=False)
    default = compiled.owners.get(default_category)
    terms = () if default is None else _by_weight(found, default)
    return Classification(default_category, confidence, terms, fell_back=True)


def find_trigger(text: str, terms: Sequence[str]) -> str | None:
    """Return the first critical trigger term found in the text (whole words, case-insensitive).

    "First" follows the order of `terms`, so a policy can list its most serious terms first.
    """
    if not terms:
        return None
    terms = tuple(terms)
    compiled = _compile_triggers(terms)
    found = _match(compiled, scan_text(text))
    if not found and len(text) > WINDOW_HEAD_CHARS + WINDOW_TAIL_CHARS:
        # A critical term is looked for everywhere: the part between the window's ends too
        # (overlapping them, so a word cut by the window's edge is whole in one of the two).
        middle = text[
            WINDOW_HEAD_CHARS - _EDGE_OVERLAP : len(text) - WINDOW_TAIL_CHARS + _EDGE_OVERLAP
        ]
        tokens = middle.encode("utf-8", "surrogatepass").translate(_WORD_TABLE).split()
        # A set probe per word (in C) says whether any trigger word is there at all; only
        # then is the middle scanned like the window, to match phrases and order exactly.
        if not _trigger_keys(terms).isdisjoint(tokens):
            found = _match(compiled, TextScan(middle, whole=True))
    return min(found)[1] if found else None


def _by_weight(found: set[tuple[int, str, float]], owner: int) -> tuple[str, ...]:
    """Return the owner's terms, heaviest first, then alphabetically."""
    return tuple(term for _, term in sorted((-w, term) for o, term, w in found if o == owner))


def _match(compiled: _Terms, scan: TextScan) -> set[tuple[int, str, float]]:
    """Return (owner index, term, weight) for every compiled term present in the window."""
    found = set()
    hits = scan.hits
    for key in compiled.forms.intersection(hits):
        found.update(compiled.words[key])
    for key in compiled.phrase_keys.intersection(hits):
        for phrase_words, phrase, entry in compiled.phrases[key]:
            if phrase_words <= hits and scan.has_phrase(phrase):
                found.add(entry)
    return found


@lru_cache(maxsize=32)
def _compile_categories(categories: tuple[CategoryKeywords, ...]) -> _Terms:
    entries = (
        (owner, term, weight)
        for owner, category in enumerate(categories)
        for term, weight in category.keywords.items()
        if weight > 0
    )
    owners: dict[str, int] = {}
    for owner, category in enumerate(categories):
        owners.setdefault(category.slug, owner)
    return _compile(entries, owners)


@lru_cache(maxsize=64)
def _trigger_keys(terms: tuple[str, ...]) -> frozenset[bytes]:
    """Every word whose presence may mean a trigger: single-word forms, phrases' key words."""
    compiled = _compile_triggers(terms)
    return compiled.forms | compiled.phrase_keys


@lru_cache(maxsize=64)
def _compile_triggers(terms: tuple[str, ...]) -> _Terms:
    # The owner is the term's position, so the lowest match is the first term listed.
    return _compile(((owner, term, 0.0) for owner, term in enumerate(terms)), {})


def _compile(entries: Iterable[tuple[int, str, float]], owners: dict[str, int]) -> _Terms:
    words: dict[bytes, list[tuple[int, str, float]]] = {}
    phrases: dict[bytes, list[tuple[frozenset[bytes], bytes, tuple[int, str, float]]]] = {}
    phrase_words: set[bytes] = set()
    for entry in entries:
        parts = entry[1].encode("utf-8", "surrogatepass").translate(_WORD_TABLE).split()
        if len(parts) == 1:
            for form in _inflections(parts[0]):
                words.setdefault(form, []).append(entry)
        elif parts:
            candidate = (frozenset(parts), compile_phrase(parts), entry)
            phrases.setdefault(max(parts, key=len), []).append(candidate)
            phrase_words.update(parts)
    register_words(frozenset(words) | phrase_words)
    return _Terms(
        words={form: tuple(entries) for form, entries in words.items()},
        phrases={k: tuple(candidates) for k, candidates in phrases.items()},
        forms=frozenset(words),
        phrase_keys=frozenset(phrases),
        owners=owners,
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
