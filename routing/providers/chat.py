"""Chat completions from model providers: one call, a typed result, typed errors."""

import asyncio
import contextlib
import json
import logging
import ssl
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import NamedTuple, TypedDict, Unpack

import anyio
import httpx2
import openai
from django.conf import settings

from routing.policy import ModelSpec
from routing.pricing import ServiceTier
from routing.prompts import prompt_cache_key
from routing.providers.compat import param_rules_for, request_for_model
from routing.providers.usage_block import USAGE_FIELDS, usage_parse

logger = logging.getLogger(__name__)

SANDBOX_BASE_URL = "http://sandbox.invalid/v1"


@dataclass(frozen=True)
class ProviderResult:
    content: str
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    finish_reason: str
    upstream_id: str
    sandbox: bool
    param_changes: tuple[str, ...] = ()  # how the request was shaped for the model
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    reasoning_tokens: int = 0
    service_tier: ServiceTier = ServiceTier.DEFAULT

    def usage_fields(self) -> dict:
        """The billed tokens and tier, as Outcome's fields."""
        return {name: getattr(self, name) for name in USAGE_FIELDS}


class ProviderError(Exception):
    """An upstream failure, after the SDK's configured retries; status is what we answer."""

    status = 502
    code = "upstream_error"
    # Whether the failure says something about the model's health (the circuit breaker
    # counts it). A request the model refused is the caller's problem: counting it would let
    # one tenant take a model out of rotation for everyone.
    model_at_fault = True

    def __init__(
        self,
        message: str,
        *,
        upstream_status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.upstream_status = upstream_status
        self.retry_after_s = retry_after_s

    @property
    def retryable(self) -> bool:
        """Rate limits, 5xx, timeouts, resets and broken bodies are worth another try;
        other 4xx answers (bad request, bad key, unknown model) are not."""
        return (
            self.upstream_status is None
            or self.upstream_status in (408, 409, 429)
            or (self.upstream_status >= 500)
        )


class ProviderRequestRefused(ProviderError):
    """The request itself is wrong for the model: refused upstream (400, 413, 422), or it
    could not even be encoded here (a lone surrogate). The caller's 400; no retry, no
    fallback (another model would refuse it too), and the model's health is untouched."""

    status = 400
    code = "request_refused_by_model"
    model_at_fault = False

    def __init__(self, message: str, *, param: str | None = None, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.param = param  # the request parameter the model named, if any

    @property
    def retryable(self) -> bool:
        return False


# The upstream statuses that mean "this request is wrong", whoever sends it.
REQUEST_FAULT_STATUSES = (400, 413, 422)


class ProviderTimeout(ProviderError):
    status = 504
    code = "upstream_timeout"


class ProviderRateLimited(ProviderError):
    code = "upstream_rate_limited"


class ProviderBadResponse(ProviderError):
    code = "upstream_bad_response"


class ProviderUnreachable(ProviderError):
    code = "upstream_unreachable"


# Clients are pooled and reused: one per endpoint and event loop (an async connection pool
# belongs to the loop that made it; a server has one loop per worker).
_endpoints: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict]" = (
    weakref.WeakKeyDictionary()
)


@dataclass(frozen=True)
class _Endpoint:
    """An upstream endpoint on one event loop: the SDK's client, the HTTP client it was given,
    and what the SDK's request machinery would work out anew for every call, worked out once:
    the chat completions URL and the headers the SDK sends (its auth, user agent and platform
    headers, over the HTTP client's own)."""

    client: openai.AsyncOpenAI
    http: httpx2.AsyncClient
    url: httpx2.URL
    headers: httpx2.Headers
    sandbox: bool


def _endpoint_key(model: ModelSpec) -> tuple[tuple, bool]:
    sandbox = settings.UPSTREAM_MODE == "sandbox"
    if sandbox:
        from routing.providers.sandbox_chat import state as sandbox_state

        sandbox_state.latency_ms = settings.SANDBOX_LATENCY_MS
        key: tuple = ("sandbox", settings.SANDBOX_URL)
    else:
        base_url = model.base_url or settings.OPENAI_BASE_URL or None
        key = (base_url, settings.UPSTREAM_API_KEYS.get(model.api_key_env, ""))
    return key, sandbox


def _endpoint_for(model: ModelSpec) -> _Endpoint:
    key, sandbox = _endpoint_key(model)
    per_loop = _endpoints.setdefault(asyncio.get_running_loop(), {})
    endpoint = per_loop.get(key)
    if endpoint is None:
        client, http = _build_client(key, sandbox)
        endpoint = per_loop[key] = _endpoint_build(client, http, sandbox=sandbox)
    return endpoint


def _endpoint_build(
    client: openai.AsyncOpenAI, http: httpx2.AsyncClient, *, sandbox: bool
) -> _Endpoint:
    # As the SDK merges them (its names lower-cased), on this event loop (a header names it).
    sdk_headers = {**client.auth_headers, **client.default_headers}
    sdk_headers = httpx2.Headers({k: v for k, v in sdk_headers.items() if isinstance(v, str)})
    sdk_headers["x-stainless-retry-count"] = "0"  # the SDK's retries are off: its first try
    headers = httpx2.Headers(http.headers)
    headers.update(sdk_headers.multi_items())
    url = client.base_url.copy_with(raw_path=client.base_url.raw_path + b"chat/completions")
    return _Endpoint(client=client, http=http, url=url, headers=headers, sandbox=sandbox)


async def clients_close() -> None:
    """Close this event loop's clients (a loop that ends: tests, scripts)."""
    for endpoint in _endpoints.pop(asyncio.get_running_loop(), {}).values():
        await endpoint.client.close()


def _build_client(key: tuple, sandbox: bool) -> tuple[openai.AsyncOpenAI, httpx2.AsyncClient]:
    """The SDK's client for the endpoint, and the HTTP client it was given (always ours: the
    calls go through it directly)."""
    # The SDK's own retries are off: our retry loop (routing.gateway.upstream) is the only one.
    timeout_s = settings.UPSTREAM_TIMEOUT_S
    options = {"timeout": timeout_s, "max_retries": 0}
    if sandbox and key[1]:  # the sandbox server every process shares (`make run`)
        api_key, base_url = "sandbox", key[1]
        http_client = openai.DefaultAsyncHttpxClient(timeout=timeout_s)
    elif sandbox:
        from routing.providers import sandbox as sandbox_upstream

        api_key, base_url = "sandbox", SANDBOX_BASE_URL
        http_client = httpx2.AsyncClient(transport=sandbox_upstream.transport())
    else:
        # A keyless OpenAI-compatible endpoint (a local server) still needs a non-empty key.
        api_key, base_url = key[1] or "no-key", key[0]
        if settings.UPSTREAM_HTTP_CLIENT == "aiohttp":
            # The SDK's aiohttp transport: httpx's pool checks every idle connection with a
            # select() on each request, a cost that grows with the connections kept open.
            http_client = openai.DefaultAioHttpClient(timeout=timeout_s)
        else:  # what the SDK makes when given none
            http_client = openai.DefaultAsyncHttpxClient(timeout=timeout_s)
    client = openai.AsyncOpenAI(
        api_key=api_key, base_url=base_url, http_client=http_client, **options
    )
    return client, http_client


def _request_params(
    *,
    model: ModelSpec,
    messages: list[dict],
    max_tokens: int,
    temperature: float | None = None,
    user: str = "",
    cache_key_category: str | None = None,
    sampling: dict | None = None,
) -> tuple[dict, tuple[str, ...]]:
    """Return the request body, shaped for the model, and the changes shaping made."""
    params: dict = {"model": model.name, "messages": messages, "max_tokens": max_tokens}
    params.update(sampling or {})
    if temperature is not None:
        params["temperature"] = temperature
    if user:
        params["user"] = user
    if cache_key_category and model.supports_prompt_cache_key:
        params["prompt_cache_key"] = prompt_cache_key(cache_key_category)
    params, changes = request_for_model(params, param_rules_for(model.name))
    if changes:
        logger.debug("request shaped for %s: %s", model.name, ", ".join(changes))
    return params, changes


# The body as the SDK encodes it (openai._utils._json.openapi_dumps, less its datetime and
# pydantic cases: a chat request holds neither), the encoder made once.
_json_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)

# What the SDK reports as a timeout, and as a connection failure (openai._httpx2).
_TIMEOUT_ERRORS = (httpx2.TimeoutException,)
_REQUEST_ERRORS = (httpx2.RequestError, ssl.SSLError, anyio.EndOfStream)


async def _post(
    endpoint: _Endpoint, body: dict, *, timeout_s: float | None, stream: bool = False
) -> httpx2.Response:
    """POST a chat completion through the SDK's HTTP client, as the SDK's `client.post` sends
    it (the same URL, headers, body, timeout and redirects), and raise the SDK's own errors.

    Without the SDK's request machinery: per call it built its options models, then parsed
    the URL three times and normalised every header five times (httpx's models), about 0.45 ms
    of CPU per call, where this request is the same every time but for its body and timeout.
    Its retries are off (ours are in routing.gateway.upstream) and OpenAI's client sends no
    idempotency key, so nothing else of it applies to this call."""
    timeout = endpoint.client.timeout if timeout_s is None else timeout_s
    headers = httpx2.Headers(endpoint.headers)
    headers["x-stainless-read-timeout"] = str(timeout)
    request = httpx2.Request(
        "POST",
        endpoint.url,
        headers=headers,
        cookies=endpoint.http.cookies,
        content=_json_encoder.encode(body).encode(),
        extensions={"timeout": httpx2.Timeout(timeout).as_dict()},
    )
    try:
        response = await endpoint.http.send(request, stream=stream)
        if not response.is_success:
            # The error's body, also of a stream. Broken here, it is a connection error
            # (the SDK let httpx's own exception through).
            await response.aread()
    except _TIMEOUT_ERRORS as exc:
        raise openai.APITimeoutError(request=request) from exc
    except _REQUEST_ERRORS as exc:
        raise openai.APIConnectionError(request=request) from exc
    if not response.is_success:
        raise endpoint.client._make_status_error_from_response(response)
    return response


def _refused(exc: BaseException) -> bool:
    # aiohttp's transport reports a refused connection as a connect timeout: look underneath.
    while exc is not None:
        if isinstance(exc, ConnectionRefusedError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _provider_error(exc: Exception, model: ModelSpec) -> ProviderError:
    """Translate an SDK or transport exception into our typed error."""
    if isinstance(exc, UnicodeError):  # raised here, encoding the body: nothing was sent
        return ProviderRequestRefused(
            "The request holds text that cannot be encoded as UTF-8 (a lone surrogate)."
        )
    if isinstance(exc, openai.APITimeoutError) and not _refused(exc):
        return ProviderTimeout(f"{model.name} did not answer in time")
    if isinstance(exc, openai.APIConnectionError):
        return ProviderUnreachable(f"{model.name} endpoint unreachable")
    if isinstance(exc, openai.APIStatusError) and exc.status_code in REQUEST_FAULT_STATUSES:
        return ProviderRequestRefused(
            f"{model.name} refused the request (HTTP {exc.status_code}): {_upstream_message(exc)}",
            upstream_status=exc.status_code,
            param=exc.param if isinstance(exc.param, str) else None,
        )
    if isinstance(exc, openai.APIStatusError):
        retry_after = _retry_after_s(exc.response.headers.get("retry-after"))
        kind = ProviderRateLimited if exc.status_code == 429 else ProviderError
        return kind(
            f"{model.name} answered HTTP {exc.status_code}",
            upstream_status=exc.status_code,
            retry_after_s=retry_after,
        )
    return ProviderBadResponse(f"{model.name} sent a malformed response")


def _upstream_message(exc: "openai.APIStatusError") -> str:
    """The upstream's own error message (which parameter, why), shortened: the caller needs
    it to fix the request. The SDK keeps the body's "error" object as `body`."""
    message = exc.body.get("message") if isinstance(exc.body, dict) else None
    return str(message or exc.message)[:300]


def _retry_after_s(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare from model APIs; use our own backoff


SDK_ERRORS = (openai.APIError, ValueError)


class CallOptions(TypedDict, total=False):
    temperature: float | None
    user: str
    cache_key_category: str | None  # sends prompt_cache_key, where the model supports it
    sampling: dict | None  # top_p, stop, seed, ... passed through
    timeout_s: float | None  # this attempt's share of the request's deadline


async def achat_complete(
    *, model: ModelSpec, messages: list[dict], max_tokens: int, **options: Unpack[CallOptions]
) -> ProviderResult:
    """Return the upstream's answer for one chat completion, or raise a ProviderError."""
    endpoint = _endpoint_for(model)
    timeout_s = options.pop("timeout_s", None)
    params, changes = _request_params(
        model=model, messages=messages, max_tokens=max_tokens, **options
    )
    try:
        # The answer parsed with json, not as the SDK's pydantic models: we read five fields.
        response = await _post(endpoint, params, timeout_s=timeout_s)
        answer = json.loads(response.content)
    except SDK_ERRORS as exc:
        raise _provider_error(exc, model) from exc
    return _result_from(answer, model=model, sandbox=endpoint.sandbox, param_changes=changes)


class UpstreamChunk(NamedTuple):
    """One server-sent event of an upstream stream: its JSON as sent, and parsed."""

    raw: bytes
    data: dict


class UpstreamBatch(NamedTuple):
    """The events of one read of an upstream stream, and whether its [DONE] was among them.

    Relayed as one write: an upstream that sends its events together (most do, once the
    answer is ready) costs one trip through the response machinery and one send, not one
    per event, and an event is never held back for another."""

    chunks: list[UpstreamChunk]
    done: bool


@dataclass
class UpstreamStream:
    """An open upstream stream: iterate UpstreamBatches; failures after the first byte raise
    ProviderError too (after the batch of the events before them)."""

    batches: AsyncIterator[UpstreamBatch]
    sandbox: bool
    close: object


async def sse_data_batches(body: AsyncIterator[bytes]) -> AsyncIterator[list[bytes]]:
    """Yield, for each read of an event stream that completes lines, the payloads of its
    `data:` lines, as bytes, stripped; other lines (blank separators, comments, event names)
    are skipped.

    Split here, on bytes, rather than by the response's aiter_lines(): that decoded every
    chunk to text (finding its charset in the headers first), split it with str.splitlines(),
    which also breaks a line at U+2028 and the like (legal, unescaped, in a JSON string), and
    each payload was encoded back to bytes to be relayed. Events are UTF-8 (the SSE format
    says so); a line ends at CRLF, LF or CR."""
    async with contextlib.aclosing(body) as body:
        rest = b""
        async for data in body:
            rest += data
            if b"\r" in rest:
                rest = rest.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            *lines, rest = rest.split(b"\n")
            payloads = [line[5:].strip() for line in lines if line.startswith(b"data:")]
            if payloads:
                yield payloads
        if rest.startswith(b"data:"):  # the last line, without its line end
            yield [rest[5:].strip()]


def _upstream_chunk(payload: bytes, model: ModelSpec) -> UpstreamChunk:
    """Parse one event; raise ProviderError for an error event, ValueError for a bad one."""
    try:
        data = json.loads(payload)
    except UnicodeDecodeError:  # as text decoding did: U+FFFD, relayed
        payload = payload.decode(errors="replace").encode()
        data = json.loads(payload)
    if not isinstance(data, dict):
        raise ValueError("an event that is not a JSON object")
    if data.get("error"):
        message = (data["error"] or {}).get("message") or "stream error"
        raise ProviderError(f"{model.name} stream failed: {message}")
    return UpstreamChunk(payload, data)


async def achat_stream_open(
    *, model: ModelSpec, messages: list[dict], max_tokens: int, **options: Unpack[CallOptions]
) -> UpstreamStream:
    """Open a streamed completion (asking for the usage chunk); errors before any byte raise."""
    endpoint = _endpoint_for(model)
    timeout_s = options.pop("timeout_s", None)
    params, _ = _request_params(model=model, messages=messages, max_tokens=max_tokens, **options)
    params.update(stream=True, stream_options={"include_usage": True})
    try:
        # The raw response: its events are passed on as the upstream wrote them, parsed once
        # with json, never rebuilt as pydantic models and serialised again.
        response = await _post(endpoint, params, timeout_s=timeout_s, stream=True)
    except SDK_ERRORS as exc:
        raise _provider_error(exc, model) from exc

    async def batches():
        try:
            # Not closed here at [DONE]: closed before the end of the body is read, the
            # response's connection is dropped instead of pooled. The event loop closes the
            # abandoned generators a little later (their finalizer), as it always did.
            async for payloads in sse_data_batches(response.aiter_bytes()):
                chunks, done, failure = [], False, None
                for payload in payloads:
                    if payload == b"[DONE]":
                        done = True
                        break
                    try:
                        chunks.append(_upstream_chunk(payload, model))
                    except (ProviderError, ValueError) as exc:
                        failure = exc  # raised once the events before it are passed on
                        break
                if chunks or done:
                    yield UpstreamBatch(chunks, done)
                if failure is not None:
                    raise failure
                if done:
                    return
        except ProviderError:
            raise
        except ValueError as exc:
            raise ProviderBadResponse(f"{model.name} sent a malformed event") from exc
        except Exception as exc:  # the transport broke mid-stream (reset, protocol error)
            raise ProviderUnreachable(f"{model.name} stream broke: {type(exc).__name__}") from exc

    return UpstreamStream(batches=batches(), sandbox=endpoint.sandbox, close=response.aclose)


def _result_from(
    response: dict, *, model: ModelSpec, sandbox: bool, param_changes: tuple[str, ...] = ()
) -> ProviderResult:
    try:
        choice = response["choices"][0]
        usage = response["usage"]
        int(usage["prompt_tokens"]), int(usage["completion_tokens"])  # both must be there
        return ProviderResult(
            content=choice["message"].get("content") or "",
            **usage_parse(usage, service_tier=response.get("service_tier")),
            finish_reason=choice.get("finish_reason") or "",
            upstream_id=response.get("id") or "",
            sandbox=sandbox,
            param_changes=param_changes,
        )
    except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
        raise ProviderBadResponse(f"{model.name} sent a response without choices or usage") from exc
