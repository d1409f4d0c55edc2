"""The README's API section names every field both APIs answer with: each key of real
responses (nested ones too) is checked against it."""

import json
import re
from pathlib import Path

import httpx2
import openai
import pytest

from tests.waits import after_response_settled

README = Path(__file__).resolve().parents[2] / "README.md"
HELLO = [{"role": "user", "content": "hey, loved the stream today!"}]


def _api_section() -> str:
    text = README.read_text()
    return text[text.index("\n## API\n") : text.index("\n## How a request is routed\n")]


def _keys(value, found: set[str] | None = None) -> set[str]:
    """Every object key in a JSON value, at any depth."""
    found = set() if found is None else found
    if isinstance(value, dict):
        for key, item in value.items():
            found.add(key)
            _keys(item, found)
    elif isinstance(value, list):
        for item in value:
            _keys(item, found)
    return found


def _undocumented(keys: set[str]) -> list[str]:
    """The keys named nowhere in the section's code: `cache_hit`, `{id, object}`, "id"."""
    fenced = re.compile(r"```.*?```", re.DOTALL)
    section = _api_section()
    examples = " ".join(fenced.findall(section))
    spans = re.findall(r"`([^`]+)`", fenced.sub("", section)) + re.findall(r'"(\w+)"', examples)
    named = {word for span in spans for word in re.findall(r"\w+", span)}
    return sorted(keys - named)


@pytest.mark.django_db
def test_the_native_api_fields_are_all_in_the_readme(api_client, policy):
    # given a completion, a cache hit and a decision preview, as a client gets them
    body = {"messages": HELLO, "category": "moderation", "user": "fan-1"}
    answers = [api_client.post("/api/v1/completions", body, format="json") for _ in range(2)]
    preview = api_client.post("/api/v1/route", {"messages": HELLO}, format="json")
    refused = api_client.post("/api/v1/completions", {"messages": []}, format="json")
    # then every field they hold is named in the README's API section
    assert answers[1].json()["cache_hit"] is True
    keys = set()
    for response in (*answers, preview, refused):
        keys |= _keys(response.json())
    assert {"cache_hit", "arm", "complexity_source", "complexity_signals"} <= keys
    assert _undocumented(keys) == []


def test_the_openai_compatible_fields_are_all_in_the_readme(asgi_server, policy, api_key):
    # given the SDK's calls: a completion, a stream with usage, the model list and one model
    client = openai.OpenAI(
        api_key=api_key[1], base_url=f"{asgi_server}/v1", max_retries=0, timeout=10
    )
    completion = client.chat.completions.with_raw_response.create(model="auto", messages=HELLO)
    chunks = client.chat.completions.create(
        model="auto", messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    listed = client.models.with_raw_response.list()
    one = client.models.with_raw_response.retrieve("auto")
    missing = httpx2.get(
        f"{asgi_server}/v1/models/nope", headers={"Authorization": f"Bearer {api_key[1]}"}
    )
    after_response_settled()
    # then every field of the raw JSON bodies is named in the README's API section
    keys = _keys(json.loads(completion.text))
    for chunk in chunks:
        keys |= _keys(chunk.model_dump(exclude_unset=True))
    for raw in (listed, one):
        keys |= _keys(json.loads(raw.text))
    keys |= _keys(missing.json())
    assert {"prompt_tokens_details", "owned_by", "delta"} <= keys
    assert _undocumented(keys) == []
    # and so is each decision header
    headers = [h for h in completion.headers if h.lower().startswith("x-huntaze-")]
    section = _api_section().lower()
    assert headers and [h for h in headers if f"`{h}`" not in section] == []
