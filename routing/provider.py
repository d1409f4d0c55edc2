"""The only module that talks to model providers: one call, a typed result, typed errors."""

import threading
from dataclasses import dataclass

import openai
from django.conf import settings

from routing.engine import ModelSpec

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


class ProviderError(Exception):
    """An upstream failure, after the SDK's configured retries; status is what we answer."""

    status = 502
    code = "upstream_error"

    def __init__(self, message: str, *, upstream_status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.upstream_status = upstream_status


class ProviderTimeout(ProviderError):
    status = 504
    code = "upstream_timeout"


class ProviderRateLimited(ProviderError):
    code = "upstream_rate_limited"


class ProviderBadResponse(ProviderError):
    code = "upstream_bad_response"


class ProviderUnreachable(ProviderError):
    code = "upstream_unreachable"


_clients: dict[tuple, openai.OpenAI] = {}
_clients_lock = threading.Lock()


def _client_for(model: ModelSpec) -> tuple[openai.OpenAI, bool]:
    sandbox = settings.UPSTREAM_MODE == "sandbox"
    if sandbox:
        key = ("sandbox",)
    else:
        base_url = model.base_url or settings.OPENAI_BASE_URL or None
        api_key = settings.UPSTREAM_API_KEYS.get(model.api_key_env, "")
        key = (base_url, api_key)
    key += (settings.UPSTREAM_TIMEOUT_S, settings.UPSTREAM_MAX_RETRIES)
    client = _clients.get(key)
    if client is None:
        with _clients_lock:
            client = _clients.get(key) or _build_client(key, sandbox)
            _clients[key] = client
    return client, sandbox


def _build_client(key: tuple, sandbox: bool) -> openai.OpenAI:
    options = {"timeout": settings.UPSTREAM_TIMEOUT_S, "max_retries": settings.UPSTREAM_MAX_RETRIES}
    if sandbox:
        import httpx2

        from routing import sandbox as sandbox_upstream

        http_client = httpx2.Client(transport=sandbox_upstream.transport())
        return openai.OpenAI(
            api_key="sandbox", base_url=SANDBOX_BASE_URL, http_client=http_client, **options
        )
    base_url, api_key = key[0], key[1]
    # A keyless OpenAI-compatible endpoint (a local server) still needs a non-empty key.
    return openai.OpenAI(api_key=api_key or "no-key", base_url=base_url, **options)


def chat_complete(
    *,
    model: ModelSpec,
    messages: list[dict],
    max_tokens: int,
    temperature: float | None = None,
    user: str = "",
) -> ProviderResult:
    """Return the upstream's answer for one chat completion, or raise a ProviderError."""
    client, sandbox = _client_for(model)
    if sandbox:
        from routing import sandbox as sandbox_upstream

        sandbox_upstream.state.latency_ms = settings.SANDBOX_LATENCY_MS
    params: dict = {"model": model.name, "messages": messages, "max_tokens": max_tokens}
    if temperature is not None:
        params["temperature"] = temperature
    if user:
        params["user"] = user
    try:
        response = client.chat.completions.create(**params)
    except openai.APITimeoutError as exc:
        raise ProviderTimeout(f"{model.name} did not answer in time") from exc
    except openai.APIConnectionError as exc:
        raise ProviderUnreachable(f"{model.name} endpoint unreachable") from exc
    except openai.RateLimitError as exc:
        raise ProviderRateLimited(f"{model.name} rate limited", upstream_status=429) from exc
    except openai.APIStatusError as exc:
        raise ProviderError(
            f"{model.name} answered HTTP {exc.status_code}", upstream_status=exc.status_code
        ) from exc
    except (openai.APIResponseValidationError, ValueError) as exc:
        raise ProviderBadResponse(f"{model.name} sent a malformed response") from exc
    return _result_from(response, model=model, sandbox=sandbox)


def _result_from(response: object, *, model: ModelSpec, sandbox: bool) -> ProviderResult:
    try:
        choice = response.choices[0]
        usage = response.usage
        details = usage.prompt_tokens_details
        return ProviderResult(
            content=choice.message.content or "",
            input_tokens=usage.prompt_tokens,
            cached_tokens=(details.cached_tokens or 0) if details else 0,
            output_tokens=usage.completion_tokens,
            finish_reason=choice.finish_reason or "",
            upstream_id=response.id or "",
            sandbox=sandbox,
        )
    except (AttributeError, IndexError, TypeError) as exc:
        raise ProviderBadResponse(f"{model.name} sent a response without choices or usage") from exc
