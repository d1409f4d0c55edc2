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
so they are looked for in the whole text.

Both lookups are one pass of a multi-pattern (Aho-Corasick) automaton over the normalised
bytes, in compiled code (ahocorasick_rs), built once per vocabulary: splitting a text into
words would cost a Python object per word, the automaton costs a little Python per hit. In the
window, every term of every registered vocabulary is one pattern with a space on both sides,
so it matches whole words only. Separators are runs of spaces once normalised, so a phrase is
matched as written with single spaces, and a phrase whose words are further apart ("miss...
you") is confirmed by a regular expression, run only where the window holds its first words
followed by two spaces. The triggers of a category get their own small automaton over the
whole text, which only finds where a word may be a trigger; that word is then read whole.
"""

import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType

from ahocorasick_rs import BytesAhoCorasick, Implementation, MatchKind

WINDOW_HEAD_CHARS = 800
WINDOW_TAIL_CHARS = 400

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


def term_words(term: str) -> list[bytes]:
    """Return a term's normalised words (none for a term without a letter or digit)."""
    return term.encode("utf-8", "surrogatepass").translate(_WORD_TABLE).split()


def _phrase_regex(words: Sequence[bytes]) -> re.Pattern[bytes]:
    """Return a pattern for the words as consecutive whole words, however far apart."""
    return re.compile(b" " + b" +".join(map(re.escape, words)) + b" ")


# The automaton's start-byte prefilter is used only for three distinct first bytes or fewer.
_PREFILTER_OFF = (b"\x00", b"\x01", b"\x02")


@dataclass(frozen=True)
class _Lexicon:
    """Every term some window lookup needs, compiled into one automaton."""

    terms: frozenset[bytes]  # normalised words joined by one space: b"refunds", b"how many"
    automaton: BytesAhoCorasick
    found: tuple[bytes | None, ...]  # pattern index -> the term it matches (None: see below)
    # From pattern index `first_loose` on, a phrase's first words followed by two spaces: the
    # phrases starting so, each with the regular expression that confirms it where it starts.
    first_loose: int
    loose: tuple[tuple[tuple[bytes, re.Pattern[bytes]], ...], ...]

    @classmethod
    def build(cls, terms: frozenset[bytes]) -> "_Lexicon":
        patterns: list[bytes] = []
        starts: dict[bytes, list[tuple[bytes, re.Pattern[bytes]]]] = {}
        for term in sorted(terms):  # sorted: the same terms always build the same automaton
            patterns.append(b" " + term + b" ")
            # Words further apart: the words before the first separator of two spaces or more
            # are one space apart, so one of these patterns starts where the phrase does.
            words = term.split(b" ")
            for end in range(1, len(words)):
                start = b" " + b" ".join(words[:end]) + b"  "
                starts.setdefault(start, []).append((term, _phrase_regex(words)))
        found: list[bytes | None] = [pattern[1:-1] for pattern in patterns]
        first_loose = len(patterns)
        patterns.extend(starts)
        found.extend(None for _ in starts)
        # Every pattern starts with a space, so the automaton would pick a prefilter that calls
        # memchr for the next space each time it is back at its start state: once a word, which
        # costs more than it skips. Patterns with other first bytes switch that prefilter off;
        # these never match, since no normalised text holds a control character.
        patterns.extend(_PREFILTER_OFF)
        # A DFA: the fastest search for a few thousand patterns, at a few MB of memory.
        automaton = BytesAhoCorasick(patterns, implementation=Implementation.DFA)
        loose = tuple(tuple(phrases) for phrases in starts.values())
        return cls(terms, automaton, tuple(found), first_loose, loose)


# The lexicon only grows, by the terms of each newly compiled vocabulary: a few thousand terms
# over the life of a process, and an automaton rebuilt in milliseconds each time.
_lexicon = _Lexicon.build(frozenset())
_lexicon_lock = threading.Lock()  # two compiles at once must not lose each other's terms


def register_terms(terms: frozenset[bytes]) -> None:
    """Add a vocabulary's terms (normalised, words joined by one space) to every window scan."""
    global _lexicon
    with _lexicon_lock:
        if not terms <= _lexicon.terms:
            _lexicon = _Lexicon.build(_lexicon.terms | terms)


class TextScan:
    """The normalised text of one decision, read by every keyword lookup of that decision."""

    __slots__ = ("_scanned", "_text", "_whole", "data", "padded", "window")

    def __init__(self, text: str) -> None:
        window = text
        if len(text) > WINDOW_HEAD_CHARS + WINDOW_TAIL_CHARS:
            window = text[:WINDOW_HEAD_CHARS] + "\n" + text[-WINDOW_TAIL_CHARS:]
        self._text = text
        self.window = window
        self.data = window.encode("utf-8", "surrogatepass")
        self.padded = b"".join((b" ", self.data.translate(_WORD_TABLE), b" "))  # normalised
        self._whole = self.padded if window is text else None
        self._scanned: tuple[_Lexicon | None, set[bytes]] = (None, set())

    @property
    def hits(self) -> set[bytes]:
        """Return the registered terms that occur in the window (read-only)."""
        lexicon, hits = self._scanned  # one tuple: threads sharing the scan see a matching pair
        if lexicon is not _lexicon:  # first use, or terms were registered since
            lexicon = _lexicon
            hits = _terms_in(lexicon, self.padded)
            self._scanned = (lexicon, hits)
        return hits

    @property
    def whole(self) -> bytes:
        """Return the whole text normalised, with a space before and after."""
        if self._whole is None:
            data = self._text.encode("utf-8", "surrogatepass").translate(_WORD_TABLE)
            self._whole = b"".join((b" ", data, b" "))
        return self._whole


def _terms_in(lexicon: _Lexicon, padded: bytes) -> set[bytes]:
    found = lexicon.found
    matches = lexicon.automaton.find_matches_as_indexes(padded, True)
    hits = {found[i] for i, _, _ in matches}
    if None in hits:  # some phrase may be there with words further apart
        hits.discard(None)
        first = lexicon.first_loose
        for i, start, _ in matches:
            if i >= first:
                phrases = lexicon.loose[i - first]
                hits.update(term for term, regex in phrases if regex.match(padded, start))
    return hits  # type: ignore[return-value]  # None is gone


# The engine hands the same string to classify(), estimate_complexity() and find_trigger():
# the last scan is reused when the very same object comes back (an identity check, so a long
# text is not even hashed), and any other text is scanned afresh.
_last_scan: tuple[str, TextScan] | None = None


def scan_text(text: str) -> TextScan:
    """Return the normalised text, reusing the previous call's for the same text."""
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
# are found by identity first, without hashing their contents.
_last_categories: tuple[tuple[CategoryKeywords, ...], "_Categories"] | None = None
_last_triggers: tuple[tuple[str, ...], "_Triggers"] | None = None


def _compiled_categories(categories: tuple[CategoryKeywords, ...]) -> "_Categories":
    global _last_categories
    last = _last_categories
    if last is not None and last[0] is categories:
        return last[1]
    compiled = _compile_categories(categories)
    _last_categories = (categories, compiled)
    return compiled


def _compiled_triggers(terms: tuple[str, ...]) -> "_Triggers":
    global _last_triggers
    last = _last_triggers
    if last is not None and last[0] is terms:
        return last[1]
    compiled = _compile_triggers(terms)
    _last_triggers = (terms, compiled)
    return compiled


@lru_cache(maxsize=32)
def _compile_categories(categories: tuple[CategoryKeywords, ...]) -> _Categories:
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


@lru_cache(maxsize=64)
def _compile_triggers(terms: tuple[str, ...]) -> _Triggers:
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
