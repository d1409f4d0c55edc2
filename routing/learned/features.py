"""Text -> named features, the same function for training and for every request (pure).

A prompt becomes lowercase word and symbol tokens, their unigrams and bigrams, and a few
"shape" tokens (length, lines, share of digits and of symbols, non-Latin script), all plain
strings so an explanation can name them. Numbers are folded by length ("<num2>"), so "17" and
"42" are one feature. Only a bounded window is read, the start (where a prompt says what it
wants) and the end (where the question is after pasted material), so the cost is flat from a
chat message to a 100k-token prompt.
"""

import math
import re

from routing.complexity import ComplexityEstimate, estimate_complexity

try:  # compiled by `make install` (scripts/build_kernel.py); the code below gives the same
    from routing.learned.kernel import ascii_shape_counts, ascii_tokens
except ImportError:
    ascii_shape_counts = ascii_tokens = None

# Bump when the features change: an artifact built for other features is refused at load.
# The meaning vector is not part of it: an artifact names its word-vector table in its card
# (routing.learned.meaning), so an artifact without one still loads and can be compared.
FEATURES_VERSION = "words-bigrams-shape+signals/5"
MEANING_PREFIX = "meaning:"  # a word piece's share of the meaning vector, in explanations
WINDOW_HEAD_CHARS = 1000
WINDOW_TAIL_CHARS = 300

_TOKEN = re.compile(r"[a-z]+|0+|[^\sa-z0]")
_DIGIT = re.compile(r"[0-9]")
_LONG_NUMBER = re.compile(r"0{5,}")
_FOLD_DIGITS = bytes.maketrans(b"123456789", b"000000000")
_DIGITS = b"0123456789"
_ASCII_LETTERS = bytes(range(65, 91)) + bytes(range(97, 123))
_ASCII = bytes(range(128))


def text_window(text: str) -> str:
    """Return the part of the text the models read: all of it, or its start and end."""
    if len(text) <= WINDOW_HEAD_CHARS + WINDOW_TAIL_CHARS:
        return text
    return text[:WINDOW_HEAD_CHARS] + "\n" + text[-WINDOW_TAIL_CHARS:]


def ascii_window(text: str) -> str | None:
    """Return the window lowercased where it is ASCII (most prompts), else None."""
    window = text_window(text).lower()
    return window if window.isascii() else None


def tokens(text: str) -> list[str]:
    """Return the window's tokens: words, numbers as zeros by length (at most four), and
    single symbols."""
    window = ascii_window(text)
    if window is not None:  # most prompts
        if ascii_tokens is not None:  # one compiled pass
            return ascii_tokens(window)
        # bytes.translate folds digits faster than a regex
        window = window.encode().translate(_FOLD_DIGITS).decode()
        folded = _LONG_NUMBER.sub("0000", window) if "00000" in window else window
    else:
        folded = _LONG_NUMBER.sub("0000", _DIGIT.sub("0", text_window(text).lower()))
    return _TOKEN.findall(folded)


def shape_features(text: str) -> list[str]:
    """Return coarse facts about the whole text's form, as named features."""
    if not text:
        return ["#empty"]
    window = text_window(text)
    if window.isascii() and ascii_shape_counts is not None:  # one compiled pass
        size, other_script = len(window), 0
        digits, letters, spaces = ascii_shape_counts(window)
    else:  # counted on the window's UTF-8 bytes: bytes.translate is one C pass per count
        data = window.encode("utf-8", "surrogatepass")
        size = len(data)
        digits = size - len(data.translate(None, _DIGITS))
        letters = size - len(data.translate(None, _ASCII_LETTERS))
        other_script = len(data.translate(None, _ASCII))
        spaces = data.count(b" ") + data.count(b"\n")
    symbols = size - digits - letters - other_script - spaces
    found = [
        f"#len{min(int(math.log2(len(text) + 1)), 16)}",
        f"#lines{min(text.count(chr(10)), 40).bit_length()}",
        f"#digits{min(20 * digits // size, 6)}",
        f"#symbols{min(20 * symbols // size, 8)}",
    ]
    if other_script > letters:
        found.append("#non_latin")
    return found


def text_features(text: str) -> list[str]:
    """Return every feature name of the text, repeated as often as it occurs."""
    words = tokens(text)
    bigrams = [a + " " + b for a, b in zip(words, words[1:], strict=False)]
    return words + bigrams + shape_features(text)


# The hand-made complexity estimate, as numbers for the needs-premium model: on data sets left
# out of training, its score ranks prompts better than n-grams or refitted signal weights do
# (make eval-router, section 4), so by default the model calibrates the score alone.
SIGNAL_NAMES = (
    "signal:score",
    "signal:length",
    "signal:code",
    "signal:reasoning",
    "signal:numbers",
    "signal:questions",
    "signal:steps",
    "signal:constraints",
    "signal:tables",
    "signal:log_chars",
)


def signal_values(text: str) -> tuple[list[float], ComplexityEstimate]:
    """Return the estimate's score, each signal's points and the log length (SIGNAL_NAMES
    order), with the estimate itself (its signals explain a decision to people)."""
    # A token count of chars / 4 keeps the model a function of the text alone.
    estimate = estimate_complexity(text, token_count=len(text) // 4)
    points = {s.name: s.points for s in estimate.signals}
    values = [points.get(name.removeprefix("signal:"), 0.0) for name in SIGNAL_NAMES[1:-1]]
    return [estimate.score, *values, math.log1p(len(text))], estimate
