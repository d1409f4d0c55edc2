"""The sandbox's chat completions: OpenAI's wire format, answered deterministically, with
injected faults, latency and an imitated prompt-prefix cache (its state shared by threads).

It imitates provider prefix caching (a prompt prefix of 1,024 tokens or more seen recently is
reported as cached, in 128-token steps) and takes injected faults: "429", "500", "timeout",
"malformed", applied one per request in the order given. A model can be made strict, as newer
models are: it refuses `max_tokens` and a temperature other than the default. As a judge
(shadow evaluation) it gives synthetic verdicts (routing.providers.sandbox_judge).
"""

import hashlib
import json
import random
import threading
import time
from collections import OrderedDict, deque

from routing import tokens
from routing.providers.sandbox_judge import judge_reply
from routing.providers.sandbox_usage import usage_log
from routing.providers.sandbox_wire import api_error
from routing.quality import JUDGE_MARKER

FAULTS = ("400", "429", "500", "503", "reset", "timeout", "malformed", "midstream")
MIDSTREAM_BREAK_AFTER = 2  # content chunks sent before an injected mid-stream break
CACHE_MIN_TOKENS = 1024
CACHE_STEP_TOKENS = 128
# Models named with these answer as such providers' models do: "claude" ones report cache
# writes (prompt_tokens_details.cache_write_tokens, inside prompt_tokens), "reason" ones
# reasoning tokens (completion_tokens_details.reasoning_tokens, inside completion_tokens).
CACHE_WRITE_MARK = "claude"
REASONING_MARK = "reason"
REASONING_BASE_TOKENS = 40
SERVICE_TIERS = ("default", "flex", "priority")
CACHE_CAPACITY = 10_000
HTTP_TIMEOUT_SLEEP_S = 5.0  # a bounded hang: longer than any test's client timeout
WORDS = (
    "thanks for reaching out here is a clear answer with the key points first then the detail "
    "you asked for plus one practical next step to take today"
).split()


class SandboxTimeout(Exception):
    """Raised by the handler for an injected timeout; each transport turns it into its own."""


class SandboxReset(Exception):
    """Raised by the handler for an injected connection reset."""


class SandboxStream:
    """A streamed answer: SSE events to send one by one, maybe broken after some."""

    def __init__(self, events: list[bytes], *, break_after: int | None, chunk_delay_s: float):
        self.events = events
        self.break_after = break_after
        self.chunk_delay_s = chunk_delay_s


class SandboxState:
    """Injected faults, latency and the imitated prompt-prefix cache, shared by threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: deque[str] = deque()
        self._prefixes: OrderedDict[str, None] = OrderedDict()
        self.latency_ms = 0
        self.chunk_delay_ms = 0
        self.calls = 0
        self.calls_by_model: dict[str, int] = {}
        self.last_request: dict = {}
        self._random_rate = 0.0
        self._random_kinds: tuple[str, ...] = ()
        self._rng = random.Random(0)  # noqa: S311 - fault drills, not security
        self._model_faults: dict[str, str] = {}
        self._strict_models: set[str] = set()
        self.judge_seed = 0  # another seed draws another sample of judge verdicts

    def inject(self, *faults: str) -> None:
        unknown = set(faults) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown sandbox faults: {sorted(unknown)}")
        with self._lock:
            self._faults.extend(faults)

    def fail_randomly(self, rate: float, kinds: tuple[str, ...], seed: int = 0) -> None:
        """Fail a share of all requests with faults drawn from `kinds` (fault drills)."""
        unknown = set(kinds) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown sandbox faults: {sorted(unknown)}")
        with self._lock:
            self._random_rate, self._random_kinds = rate, tuple(kinds)
            self._rng = random.Random(seed)  # noqa: S311

    def fail_model(self, model: str, fault: str | None) -> None:
        """Fail every call to one model with `fault` (None: heal it): one model down, the
        others healthy."""
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown sandbox fault: {fault}")
        with self._lock:
            if fault is None:
                self._model_faults.pop(model, None)
            else:
                self._model_faults[model] = fault

    def strict_model(self, model: str, strict: bool = True) -> None:
        """Make one model refuse the old parameter forms, as newer models do (False: lenient)."""
        with self._lock:
            if strict:
                self._strict_models.add(model)
            else:
                self._strict_models.discard(model)

    def is_strict(self, model: str) -> bool:
        return model in self._strict_models

    def reset(self) -> None:
        """Back to a fresh sandbox, latency included: the HTTP server (live mode) reads
        `latency_ms` as the last test left it, and only a sandbox-mode call sets it anew."""
        with self._lock:
            self.latency_ms = 0
            self.chunk_delay_ms = 0
            self._strict_models.clear()
            self._random_rate, self._random_kinds = 0.0, ()
            self._model_faults.clear()
            self._faults.clear()
            self._prefixes.clear()
            self.calls = 0
            self.calls_by_model = {}
            self.judge_seed = 0
        usage_log.reset()

    def next_fault(self, model: str = "") -> str | None:
        with self._lock:
            self.calls += 1
            if model in self._model_faults:
                return self._model_faults[model]
            if self._faults:
                return self._faults.popleft()
            if self._random_rate and self._rng.random() < self._random_rate:
                return self._rng.choice(self._random_kinds)
            return None

    def cached_prefix_tokens(self, token_ids: list[int]) -> int:
        """Return the longest recently seen prefix length, and remember this prompt's."""
        steps = range(CACHE_MIN_TOKENS, len(token_ids) + 1, CACHE_STEP_TOKENS)
        digests = {n: hashlib.sha256(str(token_ids[:n]).encode()).hexdigest() for n in steps}
        with self._lock:
            cached = max((n for n, d in digests.items() if d in self._prefixes), default=0)
            for digest in digests.values():
                self._prefixes[digest] = None
                self._prefixes.move_to_end(digest)
            while len(self._prefixes) > CACHE_CAPACITY:
                self._prefixes.popitem(last=False)
        return cached


state = SandboxState()


# What OpenAI's chat completions accept for the numeric sampling parameters.
PARAMETER_RANGES = {
    "temperature": (0, 2),
    "top_p": (0, 1),
    "presence_penalty": (-2, 2),
    "frequency_penalty": (-2, 2),
}


def _refused_parameter(body: dict) -> tuple[str, str] | None:
    """(parameter, message) of the first parameter a real model would refuse, or None."""
    for name, (low, high) in PARAMETER_RANGES.items():
        value = body.get(name)
        if value is None:
            continue
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not low <= value <= high:
            return name, f"Invalid '{name}': expected a number from {low} to {high}, got {value!r}."
    return None


def strict_refusal(body: dict) -> tuple[str, str, str] | None:
    """(parameter, code, message) of the old form the body's model refuses if it was made
    strict, or None; the messages are OpenAI's."""
    if not state.is_strict(str(body.get("model"))):
        return None
    if "max_tokens" in body:
        return (
            "max_tokens",
            "unsupported_parameter",
            "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead.",
        )
    temperature = body.get("temperature")
    if temperature is not None and temperature != 1:
        return (
            "temperature",
            "unsupported_value",
            f"Unsupported value: 'temperature' does not support {temperature} with this "
            "model. Only the default (1) value is supported.",
        )
    return None


def handle(path: str, raw_body: bytes) -> tuple[int, dict, bytes | SandboxStream]:
    """Answer one request: (status, headers, body or stream). Raises SandboxTimeout."""
    if not path.endswith("/chat/completions"):
        return api_error(404, f"Unknown path {path}", "invalid_request_error", "not_found")
    try:
        body = json.loads(raw_body)
        model = body["model"]
        messages = body["messages"]
    except (ValueError, KeyError, TypeError):
        return api_error(400, "Malformed request body", "invalid_request_error", "invalid_body")

    state.last_request = body
    state.calls_by_model[model] = state.calls_by_model.get(model, 0) + 1
    fault = state.next_fault(model)
    refused = _refused_parameter(body)
    if refused is not None:  # as a real model validates its parameters
        param, message = refused
        return api_error(400, message, "invalid_request_error", "invalid_value", param)
    refused_as_strict = strict_refusal(body)
    if refused_as_strict is not None:
        param, code, message = refused_as_strict
        return api_error(400, message, "invalid_request_error", code, param)
    if fault == "429":
        status, headers, payload = api_error(429, "Rate limit reached", "requests", "rate_limit")
        return status, {**headers, "retry-after": "0"}, payload
    if fault == "500":
        return api_error(500, "The server had an error", "server_error", "server_error")
    if fault == "503":
        return api_error(503, "The engine is overloaded", "server_error", "overloaded")
    if fault == "400":
        return api_error(400, "Invalid request", "invalid_request_error", "invalid_value")
    if fault == "timeout":
        raise SandboxTimeout
    if fault == "reset":
        raise SandboxReset
    if fault == "malformed":
        return 200, {"content-type": "application/json"}, b'{"id": "chatcmpl-broken", "choi'
    if body.get("stream") and fault == "midstream":
        return _stream(body, model, messages, break_after=MIDSTREAM_BREAK_AFTER)
    if body.get("stream"):
        return _stream(body, model, messages, break_after=None)

    content, usage = answer(body, model, messages)
    response = {
        "id": "",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "sandbox",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": usage,
        "service_tier": served_tier_of(body),
    }
    response["id"] = "chatcmpl-sbx-" + hashlib.sha256(content.encode()).hexdigest()[:24]
    headers = {"content-type": "application/json", "x-sandbox": "1"}
    return 200, headers, json.dumps(response).encode()


def answer(body: dict, model: str, messages: list, *, batch: bool = False) -> tuple[str, dict]:
    """Return the deterministic answer text and its usage block (and count it as billed)."""
    prompt = "".join(f"{m.get('role')}\n{m.get('content')}\n" for m in messages)
    prompt_tokens, _ = tokens.count_message_tokens(
        [{"content": str(m.get("content", ""))} for m in messages]
    )
    token_ids = tokens.encode(prompt)
    cached = state.cached_prefix_tokens(token_ids) if token_ids else 0
    digest = hashlib.sha256(f"{model}\n{prompt}".encode()).digest()
    limit = int(body.get("max_completion_tokens") or body.get("max_tokens") or 4096)
    n_words = min(12 + digest[0] % 60, limit)
    words = [WORDS[(digest[i % 32] + i) % len(WORDS)] for i in range(n_words)]
    content = f"[sandbox {model}] " + " ".join(words) + "."
    if messages and JUDGE_MARKER in str(messages[0].get("content", "")):
        content = judge_reply(str(messages[-1].get("content", "")), seed=state.judge_seed)
    completion_tokens = min(tokens.count_text_tokens(content)[0], limit)
    cached = min(cached, prompt_tokens)
    details = {"cached_tokens": cached}
    if CACHE_WRITE_MARK in model:  # the prefix it cached now, past what it read
        details["cache_write_tokens"] = max(_cacheable(len(token_ids), prompt_tokens) - cached, 0)
    reasoning = 0
    if REASONING_MARK in model:  # thinking before the answer, within the same limit
        reasoning = min(REASONING_BASE_TOKENS + digest[1], max(limit - completion_tokens, 0))
    completion_tokens += reasoning
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": details,
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }
    usage_log.record(model=model, usage=usage, batch=batch, tier=served_tier_of(body))
    return content, usage


def _cacheable(n_tokens: int, prompt_tokens: int) -> int:
    """The longest prefix the cache keeps of a prompt: CACHE_STEP_TOKENS steps from
    CACHE_MIN_TOKENS (0 below it)."""
    if n_tokens < CACHE_MIN_TOKENS:
        return 0
    steps = (n_tokens - CACHE_MIN_TOKENS) // CACHE_STEP_TOKENS
    return min(CACHE_MIN_TOKENS + steps * CACHE_STEP_TOKENS, prompt_tokens)


def served_tier_of(body: dict) -> str:
    """The tier the sandbox serves: the one asked for ("auto" or none: default)."""
    asked = body.get("service_tier")
    return asked if asked in SERVICE_TIERS else "default"


def _stream(
    body: dict, model: str, messages: list, *, break_after: int | None
) -> tuple[int, dict, SandboxStream]:
    """Return the answer as OpenAI chunks: role, a few words each, finish, usage, [DONE]."""
    content, usage = answer(body, model, messages)
    chunk_id = "chatcmpl-sbx-" + hashlib.sha256(content.encode()).hexdigest()[:24]
    created = int(time.time())

    def event(delta: dict, finish: str | None = None, with_usage: bool = False) -> bytes:
        chunk = {
            "id": chunk_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "service_tier": served_tier_of(body),
            "choices": []
            if with_usage
            else [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }
        if with_usage:
            chunk["usage"] = usage
        return b"data: " + json.dumps(chunk).encode() + b"\n\n"

    words = content.split(" ")
    pieces = [" ".join(words[i : i + 4]) + " " for i in range(0, len(words), 4)]
    pieces[-1] = pieces[-1].rstrip()
    events = [event({"role": "assistant", "content": ""})]
    events += [event({"content": piece}) for piece in pieces]
    events.append(event({}, finish="stop"))
    if (body.get("stream_options") or {}).get("include_usage"):
        events.append(event({}, with_usage=True))
    events.append(b"data: [DONE]\n\n")
    stream = SandboxStream(
        events,
        break_after=None if break_after is None else break_after + 1,
        chunk_delay_s=state.chunk_delay_ms / 1000,
    )
    return 200, {"content-type": "text/event-stream", "x-sandbox": "1"}, stream
