"""The provider's Files and Batches endpoints, for batch jobs: upload, create, poll, download.

Synchronous (it runs in Celery workers, never on the request path). Failures are raised as
BatchProviderError, with `retryable` saying whether a later attempt may succeed.
"""

from dataclasses import dataclass

import openai
from django.conf import settings

from routing.providers.chat import SANDBOX_BASE_URL

CHAT_ENDPOINT = "/v1/chat/completions"
COMPLETION_WINDOW = "24h"


class BatchProviderError(Exception):
    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


@dataclass(frozen=True)
class Endpoint:
    """Where a model's batches go: its profile's base URL and key variable."""

    base_url: str = ""
    api_key_env: str = "OPENAI_API_KEY"


@dataclass(frozen=True)
class BatchInfo:
    id: str
    status: str  # validating, in_progress, finalizing, completed, failed, expired, cancelling...
    output_file_id: str
    error_file_id: str
    errors: str  # the provider's reasons when the whole batch failed
    metadata: dict


def _client(endpoint: Endpoint) -> openai.OpenAI:
    options = {"timeout": settings.UPSTREAM_TIMEOUT_S, "max_retries": 0}
    if settings.UPSTREAM_MODE == "sandbox" and settings.SANDBOX_URL:  # shared (`make run`)
        return openai.OpenAI(api_key="sandbox", base_url=settings.SANDBOX_URL, **options)
    if settings.UPSTREAM_MODE == "sandbox":
        import httpx2

        from routing.providers import sandbox

        http_client = httpx2.Client(transport=sandbox.transport())
        return openai.OpenAI(
            api_key="sandbox", base_url=SANDBOX_BASE_URL, http_client=http_client, **options
        )
    base_url = endpoint.base_url or settings.OPENAI_BASE_URL or None
    api_key = settings.UPSTREAM_API_KEYS.get(endpoint.api_key_env, "") or "no-key"
    return openai.OpenAI(api_key=api_key, base_url=base_url, **options)


def _error(exc: Exception, what: str) -> BatchProviderError:
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        retryable = status in (408, 409, 429) or status >= 500
        return BatchProviderError(f"{what}: HTTP {status}", retryable=retryable)
    if isinstance(exc, openai.APIConnectionError):  # timeouts included
        return BatchProviderError(f"{what}: endpoint unreachable", retryable=True)
    return BatchProviderError(f"{what}: malformed response", retryable=True)


def _info(batch) -> BatchInfo:
    errors = ""
    if batch.errors and batch.errors.data:
        errors = "; ".join(f"{e.code}: {e.message}" for e in batch.errors.data)[:500]
    return BatchInfo(
        id=batch.id,
        status=batch.status,
        output_file_id=batch.output_file_id or "",
        error_file_id=batch.error_file_id or "",
        errors=errors,
        metadata=dict(batch.metadata or {}),
    )


_ERRORS = (openai.APIError, ValueError)


def batch_file_upload(*, endpoint: Endpoint, jsonl: bytes) -> str:
    """Upload a batch input file; return its file id."""
    try:
        uploaded = _client(endpoint).files.create(file=("batch.jsonl", jsonl), purpose="batch")
    except _ERRORS as exc:
        raise _error(exc, "file upload") from exc
    return uploaded.id


def batch_create(*, endpoint: Endpoint, input_file_id: str, metadata: dict) -> BatchInfo:
    """Create a batch over an uploaded file; return it."""
    try:
        batch = _client(endpoint).batches.create(
            input_file_id=input_file_id,
            endpoint=CHAT_ENDPOINT,
            completion_window=COMPLETION_WINDOW,
            metadata=metadata,
        )
    except _ERRORS as exc:
        raise _error(exc, "batch create") from exc
    return _info(batch)


def batch_retrieve(*, endpoint: Endpoint, batch_id: str) -> BatchInfo:
    """Return the batch as the provider sees it now."""
    try:
        return _info(_client(endpoint).batches.retrieve(batch_id))
    except _ERRORS as exc:
        raise _error(exc, "batch retrieve") from exc


def batch_find(*, endpoint: Endpoint, key: str, value: str, limit: int = 100) -> BatchInfo | None:
    """Return a recent batch whose metadata has key=value (a create whose answer was lost)."""
    try:
        page = _client(endpoint).batches.list(limit=limit)
    except _ERRORS as exc:
        raise _error(exc, "batch list") from exc
    for batch in page.data:
        if (batch.metadata or {}).get(key) == value:
            return _info(batch)
    return None


def batch_file_content(*, endpoint: Endpoint, file_id: str) -> str:
    """Download an output or error file (JSONL text)."""
    try:
        return _client(endpoint).files.content(file_id).text
    except _ERRORS as exc:
        raise _error(exc, "file download") from exc
