"""What every API door accepts as a request body, checked in one place.

A body is strict JSON (no other media type; no NaN or Infinity, nor a number that overflows to
one), nested at most MAX_JSON_DEPTH levels, and none of its strings (keys included) holds a NUL
character, which PostgreSQL cannot store, or a lone UTF-16 surrogate (a `\\udfff` escape), which
cannot be encoded as UTF-8 for the upstream call. Both are refused at the door with the field
that holds them, before anything is called or written.
"""

import json
import math
from collections import deque

MAX_JSON_DEPTH = 64  # a chat request is about 5 deep; json itself overflows near 1,000
JSON_MEDIA_TYPE = "application/json"


class InvalidJson(ValueError):
    """The body is not JSON we can read: a 400 `invalid_json`."""

    code = "invalid_json"


class InvalidText(ValueError):
    """A string that can be neither stored nor sent: a 400 `invalid_text` naming its field."""

    code = "invalid_text"

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def is_json_media_type(content_type: str) -> bool:
    """True for application/json (any parameters) and for no Content-Type at all."""
    media_type = content_type.partition(";")[0].strip().lower()
    return media_type in ("", JSON_MEDIA_TYPE)


def json_body_parse(raw: bytes) -> object:
    """Return the parsed body; raise InvalidJson or InvalidText on the first problem."""
    try:
        body = json.loads(raw, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise InvalidJson(_too_deep()) from None
    except ValueError as exc:  # UnicodeDecodeError is one too
        raise InvalidJson(f"The body is not valid JSON: {exc}") from None
    _text_check_all(body)
    return body


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    # NaN and infinities (1e999 overflows to one) are not JSON, and the upstream call would
    # fail to encode them: a local error, never the upstream's.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


def text_check(value: str, *, field: str) -> str:
    """Return the string, or raise InvalidText when it cannot be stored or sent."""
    problem = _unstorable(value)
    if problem is not None:
        raise InvalidText(field, f"{field}: {_describe(problem)}")
    return value


def _unstorable(value: str) -> str | None:
    """The first character of `value` that cannot be stored or sent, if any."""
    if "\x00" in value:
        return "\x00"
    if value.isascii():  # O(1) in CPython, and most text is
        return None
    try:
        value.encode()  # UTF-8 refuses exactly the lone surrogates, faster than a regex
    except UnicodeEncodeError as error:
        return value[error.start]
    return None


def _text_check_all(body: object) -> None:
    # Breadth first and iterative, so that depth costs no Python stack. An entry is (value,
    # its parent's entry, its key or index, depth): a path is spelled only for an error.
    pending = deque([(body, None, None, 1)])
    while pending:
        entry = pending.popleft()
        value, _, _, depth = entry
        if isinstance(value, str):
            problem = _unstorable(value)
            if problem is not None:
                field = _path(entry) or "body"
                raise InvalidText(field, f"{field}: {_describe(problem)}")
        elif isinstance(value, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise InvalidJson(_too_deep())
            if isinstance(value, list):
                pending.extend((item, entry, index, depth + 1) for index, item in enumerate(value))
                continue
            for key, item in value.items():
                problem = _unstorable(key)
                if problem is not None:
                    path = _path(entry)
                    message = f"{path or 'body'}: the key {ascii(key)} {_describe(problem)}"
                    raise InvalidText(path, message)
                pending.append((item, entry, key, depth + 1))


def _path(entry: tuple) -> str | None:
    """`messages[0].content` for an entry of _text_check_all; None for the body itself."""
    parts = []
    while entry[1] is not None:
        _, parent, key, _ = entry
        parts.append(f"[{key}]" if isinstance(key, int) else f".{key}")
        entry = parent
    return "".join(reversed(parts)).removeprefix(".") or None


def _describe(character: str) -> str:
    if character == "\x00":
        return "contains a NUL character (U+0000), which cannot be stored."
    return (
        f"contains a lone UTF-16 surrogate (U+{ord(character):04X}), which is not text "
        "and cannot be encoded as UTF-8."
    )


def _too_deep() -> str:
    return f"The body is nested deeper than {MAX_JSON_DEPTH} levels."
