"""The front door's pieces alone: the key, the body checks, and the two wire shapes of one
refusal."""

import pytest

from routing.engine import RoutingError
from routing.gateway.http import bearer_token, body_size_check, json_object_read
from routing.gateway.wire import NATIVE, OPENAI, Refusal, refusal_from, wire_for_path


@pytest.mark.parametrize(
    ("header", "token"),
    [("Bearer sk-abc", "sk-abc"), ("bearer  sk-abc ", "sk-abc"), (None, None)],
)
def test_bearer_token_is_the_key_of_a_bearer_header(rf, header, token):
    headers = {} if header is None else {"HTTP_AUTHORIZATION": header}
    assert bearer_token(rf.post("/", **headers)) == token


@pytest.mark.parametrize("header", ["Basic sk-abc", "Bearer ", "sk-abc"])
def test_an_authorization_header_of_another_form_is_refused(rf, header):
    with pytest.raises(Refusal) as refused:
        bearer_token(rf.post("/", HTTP_AUTHORIZATION=header))
    assert (refused.value.status, refused.value.code) == (401, "invalid_api_key")
    assert refused.value.headers == {"WWW-Authenticate": "Bearer"}


def test_a_body_over_the_limit_is_refused_by_its_content_length(rf, settings):
    settings.API_MAX_BODY_BYTES = 10
    with pytest.raises(Refusal) as refused:
        body_size_check(rf.post("/", data=b"{}" * 10, content_type="application/json"))
    assert (refused.value.status, refused.value.code) == (413, "payload_too_large")
    assert refused.value.message == "Request body is 20 bytes; the limit is 10."
    body_size_check(rf.post("/", data=b"{}", content_type="application/json"))  # no refusal


@pytest.mark.parametrize(
    ("content_type", "data", "status", "code"),
    [
        ("text/plain", b"{}", 415, "unsupported_media_type"),
        ("application/json", b"[1, 2]", 400, "invalid_json"),
        ("application/json", b"{", 400, "invalid_json"),
        ("application/json; charset=utf-8", b'{"a": "\\u0000"}', 400, "invalid_text"),
    ],
)
def test_a_body_that_is_not_a_json_object_of_storable_text_is_refused(
    rf, content_type, data, status, code
):
    with pytest.raises(Exception) as raised:  # noqa: PT011 - Refusal or InvalidJson/InvalidText
        json_object_read(rf.post("/", data=data, content_type=content_type))
    refusal = refusal_from(raised.value)
    assert (refusal.status, refusal.code) == (status, code)


def test_a_json_object_is_read(rf):
    request = rf.post("/", data=b'{"a": 1}', content_type="application/json")
    assert json_object_read(request) == {"a": 1}


def test_one_refusal_is_written_in_each_doors_shape():
    refusal = refusal_from(RoutingError("unknown_category", "No category 'x'.", "category"))
    assert refusal.status == 400
    assert NATIVE.body(refusal) == {
        "error": {"code": "unknown_category", "message": "No category 'x'.", "field": "category"}
    }
    assert OPENAI.body(refusal) == {
        "error": {
            "message": "No category 'x'.",
            "type": "invalid_request_error",
            "code": "unknown_category",
            "param": "category",
        }
    }


def test_a_refusal_with_a_ledger_row_names_its_request_in_both_shapes():
    refusal = Refusal(502, "upstream_error", "The model failed.", request_id="r-1")
    assert NATIVE.body(refusal)["error"]["request_id"] == "r-1"
    assert OPENAI.body(refusal)["error"]["message"] == "The model failed. (request r-1)"
    assert OPENAI.body(refusal)["error"]["type"] == "server_error"


def test_an_unexpected_error_is_a_500_internal_error_and_no_detail_leaks():
    refusal = refusal_from(KeyError("secret internals"))
    assert (refusal.status, refusal.code, refusal.message) == (
        500,
        "internal_error",
        "Internal error.",
    )


def test_the_path_chooses_the_wire():
    assert wire_for_path("/v1/chat/completions") is OPENAI
    assert wire_for_path("/api/v1/completions") is NATIVE
