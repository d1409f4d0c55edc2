import pytest

from routing.gateway.http import bearer_token, body_size_error


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer sk-abc", "sk-abc"),
        ("bearer  sk-abc ", "sk-abc"),
        ("Basic sk-abc", ""),
        ("Bearer ", ""),
        (None, ""),
    ],
)
def test_bearer_token_is_the_key_of_a_bearer_header_only(rf, header, token):
    headers = {} if header is None else {"HTTP_AUTHORIZATION": header}
    assert bearer_token(rf.post("/", **headers)) == token


def test_a_body_over_the_limit_is_refused_by_its_content_length(rf, settings):
    settings.API_MAX_BODY_BYTES = 10
    request = rf.post("/", data=b"{}" * 10, content_type="application/json")
    assert body_size_error(request) == "Request body is 20 bytes; the limit is 10."
    assert body_size_error(rf.post("/", data=b"{}", content_type="application/json")) is None
