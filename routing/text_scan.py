"""The normalised text of a request and the one automaton that finds keywords in its window.

Matching is on whole words, case-insensitive: ASCII letters are lowercased, digits kept, and
every other character (punctuation, spaces, any non-ASCII character such as an emoji or a
curly quote) separates words. A term is a word or a phrase of consecutive words, normalised
the same way, so "trade-off" matches "trade off" and "don't" matches "don’t".

Category keywords (routing.classifier) and the complexity vocabulary (routing.complexity) read
the same bounded window of the text: the first WINDOW_HEAD_CHARS and the last
WINDOW_TAIL_CHARS characters. The start is where a prompt says what it wants (role,
instructions), the end is where the question is after pasted material, and in a conversation
the end is the latest message. On the evaluation data (scripts/eval_router.py) classifying the
window instead of the whole text moves accuracy from 63.3% to 63.1%, while the cost stays flat
from a chat message to a 100k-token prompt. Critical triggers are the exception: they are
looked for in the whole text (`TextScan.whole`).

The window is read in one pass of a multi-pattern (Aho-Corasick) automaton over the
normalised bytes, in compiled code (ahocorasick_rs), rebuilt only when a vocabulary adds
terms: splitting a text into words would cost a Python object per word, the automaton costs a
little Python per hit. Every term of every registered vocabulary is one pattern with a space
on both sides, so it matches whole words only. Separators are runs of spaces once normalised,
so a phrase is matched as written with single spaces, and a phrase whose words are further
apart ("miss... you") is confirmed by a regular expression, run only where the window holds
its first words followed by two spaces.
"""

import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import wraps
from typing import TypeVar

from ahocorasick_rs import BytesAhoCorasick, Implementation

WINDOW_HEAD_CHARS = 800
WINDOW_TAIL_CHARS = 400

_WORD_TABLE = bytes(
    c + 32 if 65 <= c <= 90 else c if (97 <= c <= 122 or 48 <= c <= 57) else 32 for c in range(256)
)


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


Key = TypeVar("Key")
Value = TypeVar("Value")


def reuse_last_for_same_object(build: Callable[[Key], Value]) -> Callable[[Key], Value]:
    """Wrap `build` so that a call with the very object of the previous call returns the
    previous result (an identity check: a long text or a policy's tuples are not even hashed).

    The engine hands the same text to every lookup of one decision, and the same policy
    objects decision after decision; any other argument is built afresh."""
    last: tuple[Key, Value] | None = None

    @wraps(build)
    def reused(key: Key) -> Value:
        nonlocal last
        remembered = last  # one tuple: threads sharing it see a matching pair
        if remembered is not None and remembered[0] is key:
            return remembered[1]
        value = build(key)
        last = (key, value)
        return value

    return reused


# The engine hands the same string to classify(), estimate_complexity() and find_trigger():
# the last scan is reused when the very same object comes back, any other text is scanned
# afresh.
@reuse_last_for_same_object
def scan_text(text: str) -> TextScan:
    """Return the normalised text, reusing the previous call's for the same text."""
    return TextScan(text)
