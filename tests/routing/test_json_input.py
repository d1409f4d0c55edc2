"""The doors' shared body checks, on their own (no database)."""

import pytest

from routing.json_input import (
    MAX_JSON_DEPTH,
    InvalidJson,
    InvalidText,
    is_json_media_type,
    json_body_parse,
)


def test_a_body_nested_to_the_limit_is_read_and_one_level_more_is_refused():
    at_limit = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert json_body_parse(at_limit.encode()) is not None
    with pytest.raises(InvalidJson):
        json_body_parse(("[" + at_limit + "]").encode())


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"9" * 5000])
def test_numbers_that_are_not_json_or_not_finite_are_refused(number):
    with pytest.raises(InvalidJson):
        json_body_parse(b'{"temperature": ' + number + b"}")


def test_escaped_surrogate_pairs_are_text_and_pass():
    body = json_body_parse(b'{"user": "fan \\ud83d\\ude00", "m": ["caf\\u00e9"]}')
    assert body["user"] == "fan \N{GRINNING FACE}"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"a": {"b": [1, "x\\u0000"]}}', "a.b[1]"),
        (b'{"a": [{"k\\udc00": 1}]}', "a[0]"),
        (b'{"\\ud800": 1}', None),
        (b'"\\udfff"', "body"),
    ],
)
def test_the_first_unstorable_string_is_named_by_its_path(raw, field):
    with pytest.raises(InvalidText) as error:
        json_body_parse(raw)
    assert error.value.field == field
    assert error.value.code == "invalid_text"


@pytest.mark.parametrize(
    ("content_type", "accepted"),
    [
        ("application/json", True),
        ("Application/JSON; charset=utf-8", True),
        ("", True),
        ("text/plain", False),
        ("application/x-www-form-urlencoded", False),
        ("multipart/form-data; boundary=x", False),
    ],
)
def test_only_json_or_no_content_type_is_read(content_type, accepted):
    assert is_json_media_type(content_type) is accepted
