"""The compiled window counts (routing/complexity_scan.pyx) against the Python code they replace
(routing.complexity._text_counts): the same eight integers on crafted and random texts.
`make test` builds the module first."""

import random

import pytest

from routing import complexity
from routing.text_scan import TextScan

compiled = pytest.importorskip("routing.complexity_scan")

# Pieces each count reads: questions, backticks, list markers (ASCII and other decimal
# digits, other spaces after them), table rows, code symbols, length limits, and what must
# not count.
PIECES = (
    "1. ",
    "2) ",
    "12. ",
    "123. ",
    "- ",
    "* ",
    "• ",
    "+ ",
    "\t-\tx",
    "  - item",
    "-x",
    "1.x",
    "３. ",
    "٣) ",
    "²) ",
    "- \u00a0x",
    "-\u2003y",
    "- \n",
    " \t",
    "\n",
    "\n\n",
    "\r\n",
    "|",
    "| a | b |",
    "|\n",
    "\n|",
    ",",
    "\t",
    "a,b,c,",
    "x\ty\tz\t",
    "name,age,city,zip",
    ",,,",
    "a|b,c,d,",
    "a" * 31 + ",",
    "b" * 30 + ",",
    "{",
    "}",
    "{}",
    ";",
    ";\n",
    "()",
    "(",
    ")",
    "0 words",
    "150 words ",
    "3 bullets",
    "10 Characters",
    "5-word",
    "7\u00a0words",
    "2 tips.",
    "12 wordsmiths",
    "1,240",
    "3.5",
    "x1y2",
    "😘",
    "é",
    "\ud800",
    "plan",
    "the ",
    "?",
    "??",
    "???",
    "`",
    "``",
    "```",
    "````",
)


def _random_text(rng: random.Random) -> str:
    count = rng.choice((1, 3, 10, 40, 400))
    return "".join(rng.choice(PIECES) + rng.choice(("", " ", "\n", ", ")) for _ in range(count))


def _both(text: str) -> tuple[tuple, tuple]:
    scan = TextScan(text)
    units = complexity._LIMIT_UNITS
    return compiled.text_counts(text, scan, units), complexity._text_counts(text, scan, units)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", (0, 0, 0, 0, 0, 0, 0, 0)),
        ("why??? and? ? ``` x ````` `y`", (3, 10, 2, 0, 0, 0, 0, 0)),
        ("ünï?? ``` 😘?", (2, 3, 1, 0, 0, 0, 0, 0)),  # one and four bytes a character
        ("- first\n- second\n3. third\n44) fourth\n555. no\n-no", (0, 0, 0, 3, 0, 4, 0, 0)),
        ("1. only one line", (0, 0, 0, 1, 0, 0, 0, 0)),  # list items need a line break
        # Other decimal digits and "•" make items; other spaces are no gap before the text.
        ("\n- \xa0x\n1. \u2003x\n３. x\n٣) y\n• z\n²) no", (0, 0, 0, 1, 0, 3, 0, 0)),
        ("a,b,c,\nd\te\tf\t\n" + "x" * 31 + ",y,z,\n| g |\n| h |", (0, 0, 0, 0, 0, 0, 4, 0)),
        ("f() {\n x;\n}\n} }", (0, 0, 0, 0, 6, 0, 0, 0)),
        ("} } ;\n", (0, 0, 0, 0, 1, 0, 0, 0)),  # closing braces count only beside an opening one
        (
            "in 150 words, 3 Bullets and 5-word titles, not 2  words or 4 wordsmiths",
            (0, 0, 0, 5, 0, 0, 0, 3),
        ),
    ],
)
def test_crafted_counts(text, expected):
    counted, reference = _both(text)
    assert counted == reference == expected


def test_random_texts_count_alike():
    rng = random.Random(17)
    for _ in range(3000):
        text = _random_text(rng)
        counted, reference = _both(text)
        assert counted == reference, text


def test_long_text_counts_its_window_alike():
    rng = random.Random(5)
    text = "".join(_random_text(rng) for _ in range(200))  # far past the window
    counted, reference = _both(text)
    assert counted == reference


def test_a_str_subclass_counts_as_its_str():
    class Text(str):  # e.g. Django's SafeString
        pass

    text = "why?? 12 words\n- a\n- b ```x```"
    assert compiled.text_counts(Text(text), TextScan(Text(text)), complexity._LIMIT_UNITS) == (
        compiled.text_counts(text, TextScan(text), complexity._LIMIT_UNITS)
    )
