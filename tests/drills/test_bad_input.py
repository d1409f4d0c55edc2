"""Bad-input drill: each input that gave a 5xx, a wrong answer or a half-written request
(issue 18) is sent to the live ASGI server on 127.0.0.1; each must get a documented 4xx JSON
error, write no row and call no upstream."""

import json

import httpx2
import pytest

from routing.models import BatchJob
from tests.waits import after_response_settled
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)

MiB = 1024 * 1024
USER = {"role": "user", "content": "hello there"}
NESTED = b"[" * 100_000 + b"]" * 100_000


def _escaped(body: dict, escape: str) -> bytes:
    """JSON text with `escape` (a JSON escape such as \\udfff) where "<bad>" was."""
    return json.dumps(body).replace("<bad>", escape).encode()


def _huge_chunked_body():
    """300 MiB in 1 MiB chunks, without a Content-Length."""
    yield b'{"model": "auto", "messages": [{"role": "user", "content": "'
    chunk = b"x" * MiB
    for _ in range(300):
        yield chunk


def _bad_inputs() -> list[tuple[str, str, str, dict, object]]:
    """(name, method, path, extra headers, body) of each bad input."""
    oa, api = "/v1/chat/completions", "/api/v1/completions"
    surrogate, nul = "\\udfff", "\\u0000"
    return [
        ("surrogate in user", "POST", oa,
         {}, _escaped({"model": "auto", "messages": [USER], "user": "fan<bad>"}, surrogate)),
        ("surrogate in content", "POST", api,
         {}, _escaped({"messages": [{"role": "user", "content": "hi<bad>"}]}, surrogate)),
        ("NUL in user", "POST", api, {}, _escaped({"messages": [USER], "user": "a<bad>"}, nul)),
        ("NUL in metadata key", "POST", oa,
         {}, _escaped({"model": "auto", "messages": [USER], "metadata": {"k<bad>": "v"}}, nul)),
        ("NUL in category hint", "POST", "/api/v1/route",
         {}, _escaped({"messages": [USER], "category": "chatbot<bad>"}, nul)),
        ("surrogate in a batch item", "POST", "/api/v1/batches",
         {}, _escaped({"requests": [{"custom_id": "a<bad>", "category": "analytics",
                                     "messages": [USER]}]}, surrogate)),
        ("NaN temperature", "POST", oa,
         {}, json.dumps({"model": "auto", "messages": [USER], "temperature": float("nan")})),
        ("nested JSON", "POST", oa, {}, NESTED),
        ("nested JSON", "POST", "/api/v1/route", {}, NESTED),
        ("chunked 300 MiB", "POST", oa, {}, _huge_chunked_body()),
        ("chunked 300 MiB", "POST", api, {}, _huge_chunked_body()),
        ("month 9999-12", "GET", "/api/v1/reports/monthly/9999-12.csv", {}, None),
        ("text/plain", "POST", api,
         {"Content-Type": "text/plain"}, json.dumps({"messages": [USER]}).encode()),
        ("form body", "POST", oa,
         {"Content-Type": "application/x-www-form-urlencoded"}, b"model=auto&messages=hi"),
        ("system only", "POST", oa,
         {}, json.dumps({"model": "auto", "messages": [{"role": "system", "content": "hi"}]})),
        ("system only", "POST", api,
         {}, json.dumps({"messages": [{"role": "system", "content": "hi"}]})),
        ("GET", "GET", oa, {}, None),
        ("GET", "GET", api, {}, None),
    ]  # fmt: skip


def test_drill_15_bad_inputs_get_4xx_json_and_write_nothing(
    asgi_server, policy, api_key, sandbox_state
):
    # given the inputs of issue 18 that broke the doors
    headers = {"Authorization": f"Bearer {api_key[1]}", "Content-Type": "application/json"}
    answers = []
    # when each is sent to the live server
    with httpx2.Client(timeout=30) as http:
        for name, method, path, extra, body in _bad_inputs():
            response = http.request(
                method, f"{asgi_server}{path}", headers={**headers, **extra}, content=body
            )
            answers.append((name, path, response))
        after_response_settled()
        calls = sandbox_state.calls
        rows = UsageRecord.objects.count() + BatchJob.objects.count()
        # and the doors still serve a good request afterwards
        good = http.post(
            f"{asgi_server}/v1/chat/completions",
            json={"model": "auto", "messages": [USER]},
            headers=headers,
        )
    # then every answer is a 4xx with a JSON error code; nothing written, nothing called
    bad = [
        (name, path, r.status_code, r.text[:200])
        for name, path, r in answers
        if not (400 <= r.status_code < 500 and r.headers["content-type"] == "application/json")
        or not isinstance(r.json()["error"]["code"], str)
    ]
    print(
        f"\ndrill 15: {len(answers)} bad inputs, "
        f"{'all 4xx JSON' if not bad else f'{len(bad)} not 4xx JSON'}, "
        f"{rows} rows written, {calls} upstream calls"
    )
    assert bad == []
    assert (rows, calls) == (0, 0)
    assert good.status_code == 200
