"""The one front door, as a client meets it over real HTTP: every door refuses the same bad
requests with the same status, code and message, each in its own wire shape, before any
model is called or any row written."""

import json
import socket

import httpx2
import openai
import pytest

from routing.api_keys import api_key_revoke
from routing.models import FeatureFlag
from routing.policy_versions import policy_version_create
from tests.waits import after_response_settled
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "hello there"}]
NATIVE_SHAPE = {"code", "message", "field"}
OPENAI_SHAPE = {"message", "type", "code", "param"}
# (path, a valid body, the error's keys): each door with a body it would accept.
DOORS = {
    "native": ("/api/v1/completions", {"messages": HELLO}, NATIVE_SHAPE),
    "openai": ("/v1/chat/completions", {"model": "auto", "messages": HELLO}, OPENAI_SHAPE),
    "batches": (
        "/api/v1/batches",
        {"requests": [{"custom_id": "a", "category": "analytics", "messages": HELLO}]},
        NATIVE_SHAPE,
    ),
}
MiB = 1024 * 1024
MALFORMED = "Malformed Authorization header: use Bearer <key>."


@pytest.fixture(params=DOORS.keys())
def door(request, asgi_server, policy):
    FeatureFlag.objects.filter(name="batch").update(enabled=True)
    policy_version_create(actor="test", comment="batch on")
    path, body, shape = DOORS[request.param]
    return f"{asgi_server}{path}", body, shape


def _nothing_happened(sandbox_state) -> None:
    after_response_settled()
    assert sandbox_state.calls == 0
    assert UsageRecord.objects.count() == 0


def _refused(response, shape: set) -> tuple[int, str, str]:
    error = response.json()["error"]
    assert set(error) == shape
    return response.status_code, error["code"], error["message"]


@pytest.mark.parametrize(
    ("authorization", "revoked", "code", "message"),
    [
        (None, False, "missing_api_key", "No API key: send Authorization: Bearer <key>."),
        ("Basic {key}", False, "invalid_api_key", MALFORMED),
        ("Bearer hz_not-a-key", False, "invalid_api_key", "Invalid or revoked API key."),
        ("Bearer {key}", True, "invalid_api_key", "Invalid or revoked API key."),
    ],
    ids=["missing", "not-bearer", "unknown", "revoked"],
)  # fmt: skip
def test_a_request_without_a_valid_key_is_a_401_at_every_door(
    door, api_key, sandbox_state, authorization, revoked, code, message
):
    # given
    url, body, shape = door
    if revoked:
        api_key_revoke(api_key=api_key[0])
    headers = (
        {} if authorization is None else {"Authorization": authorization.format(key=api_key[1])}
    )
    # when
    response = httpx2.post(url, json=body, headers=headers, timeout=10)
    # then
    assert _refused(response, shape) == (401, code, message)
    assert response.headers["WWW-Authenticate"] == "Bearer"
    _nothing_happened(sandbox_state)


@pytest.mark.parametrize(
    ("content_type", "content", "status", "code", "message"),
    [
        ("text/plain", None, 415, "unsupported_media_type",
         "Unsupported media type 'text/plain': send application/json."),
        ("application/x-www-form-urlencoded", b"messages=hi", 415, "unsupported_media_type",
         "Unsupported media type 'application/x-www-form-urlencoded': send application/json."),
        ("application/json", b"{not json", 400, "invalid_json", None),
    ],
    ids=["text", "form", "broken-json"],
)  # fmt: skip
def test_a_body_that_is_not_json_is_refused_alike_at_every_door(
    door, api_key, sandbox_state, content_type, content, status, code, message
):
    # given a body sent as something other than JSON (or JSON that does not parse)
    url, body, shape = door
    headers = {"Authorization": f"Bearer {api_key[1]}", "Content-Type": content_type}
    content = json.dumps(body).encode() if content is None else content
    # when
    response = httpx2.post(url, content=content, headers=headers, timeout=10)
    # then
    got_status, got_code, got_message = _refused(response, shape)
    assert (got_status, got_code) == (status, code)
    assert message is None or got_message == message
    _nothing_happened(sandbox_state)


@pytest.mark.parametrize("path", ["/api/v1/completions", "/v1/chat/completions"])
def test_a_body_that_is_json_but_not_an_object_is_a_400_invalid_json(
    asgi_server, policy, api_key, sandbox_state, path
):
    headers = {"Authorization": f"Bearer {api_key[1]}"}
    response = httpx2.post(f"{asgi_server}{path}", json=[HELLO], headers=headers, timeout=10)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"
    assert "must be a JSON object" in response.json()["error"]["message"]
    _nothing_happened(sandbox_state)


def test_a_chunked_body_over_the_limit_is_a_413_at_every_door(
    door, api_key, settings, sandbox_state
):
    # given a body sent in chunks (no Content-Length), over a 10 kB limit
    settings.API_MAX_BODY_BYTES = 10_000
    url, body, shape = door

    def chunks():
        yield json.dumps(body).encode()[:-1] + b', "padding": "'
        for _ in range(50):
            yield b"x" * 1000
        yield b'"}'

    headers = {"Authorization": f"Bearer {api_key[1]}", "Content-Type": "application/json"}
    # when
    response = httpx2.post(url, content=chunks(), headers=headers, timeout=10)
    # then
    status, code, message = _refused(response, shape)
    assert (status, code) == (413, "payload_too_large")
    assert message == "Request body is over 10000 bytes; the limit is 10000."
    _nothing_happened(sandbox_state)


def test_a_declared_length_over_the_limit_is_a_413_at_every_door_before_the_body(door, api_key):
    # given a request that announces 300 MiB and sends none of it
    url, _, shape = door
    host, port, path = _split(url)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {api_key[1]}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {300 * MiB}\r\n\r\n"
    )
    # when
    with socket.create_connection((host, port), timeout=10) as conn:
        conn.sendall(head.encode())
        answer = conn.recv(65536).decode()
    # then
    status_line, _, rest = answer.partition("\r\n")
    assert status_line == "HTTP/1.1 413 Request Entity Too Large"
    error = json.loads(rest.partition("\r\n\r\n")[2])["error"]
    assert set(error) == shape
    assert error["message"] == f"Request body is {300 * MiB} bytes; the limit is 1000000."


def _split(url: str) -> tuple[str, int, str]:
    host_port, _, path = url.removeprefix("http://").partition("/")
    host, _, port = host_port.partition(":")
    return host, int(port), f"/{path}"


@pytest.mark.parametrize(
    ("path", "body", "shape", "code"),
    [
        ("/api/v1/completions", {"messages": HELLO, "stream": True}, NATIVE_SHAPE, "invalid_field"),
        ("/v1/chat/completions", {"model": "auto", "messages": HELLO, "stream": True},
         OPENAI_SHAPE, "invalid_value"),
    ],
)  # fmt: skip
def test_a_stream_with_an_idempotency_key_is_a_400_at_both_doors(
    asgi_server, policy, api_key, sandbox_state, path, body, shape, code
):
    headers = {"Authorization": f"Bearer {api_key[1]}", "Idempotency-Key": "k-1"}
    response = httpx2.post(f"{asgi_server}{path}", json=body, headers=headers, timeout=10)
    assert _refused(response, shape) == (
        400,
        code,
        "stream: Idempotency-Key is not supported for streams.",
    )
    _nothing_happened(sandbox_state)


def test_the_openai_sdk_raises_its_own_exceptions_for_the_doors_refusals(
    asgi_server, policy, api_key, sandbox_state
):
    base_url = f"{asgi_server}/v1"
    wrong = openai.OpenAI(api_key="hz_not-a-key", base_url=base_url, max_retries=0, timeout=10)
    with pytest.raises(openai.AuthenticationError) as refused:
        wrong.chat.completions.create(model="auto", messages=HELLO)
    assert refused.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    right = openai.OpenAI(api_key=api_key[1], base_url=base_url, max_retries=0, timeout=10)
    with pytest.raises(openai.NotFoundError) as missing:
        right.models.retrieve("no-such-model")
    assert (missing.value.code, missing.value.param) == ("model_not_found", "model")
    _nothing_happened(sandbox_state)


@pytest.mark.parametrize("door_name", DOORS.keys())
def test_every_door_checks_size_then_key_then_media_type(client, policy, settings, door_name):
    """Without the ASGI body limit in front (Django's test client calls the views), each view
    keeps the front door's order: a body too large is a 413 whoever sends it, and a bad key
    is a 401 whatever its body."""
    path, body, _ = DOORS[door_name]
    bad_key = {"Authorization": "Bearer hz_not-a-key"}
    settings.API_MAX_BODY_BYTES = 10
    too_large = client.post(path, data=body, content_type="application/json", headers=bad_key)
    settings.API_MAX_BODY_BYTES = 1_000_000
    as_text = client.post(path, data=json.dumps(body), content_type="text/plain", headers=bad_key)
    assert (too_large.status_code, too_large.json()["error"]["code"]) == (413, "payload_too_large")
    assert (as_text.status_code, as_text.json()["error"]["code"]) == (401, "invalid_api_key")
