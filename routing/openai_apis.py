"""OpenAI-compatible endpoint: the product switches by changing base_url and key only.

Async views (the ASGI hot path): parse, authenticate, validate, call one service, shape the
answer as OpenAI does. Routing hints travel in `metadata` or in X-Huntaze-* headers; the
decision comes back in X-Huntaze-* response headers. Errors are OpenAI-shaped, so the SDK
raises its usual exceptions. The request side (body, checks, hints) is routing.openai_input.
"""

import time

from django.http import HttpRequest, HttpResponse, JsonResponse

from huntaze.money import decimal_str
from routing.db import db_call
from routing.engine import Decision
from routing.gateway.call import CompletionResult, StreamStart
from routing.gateway.http import CompletionDoor, DoorAsk, DoorView, api_key_authenticate
from routing.gateway.wire import OPENAI, Refusal
from routing.openai_input import AUTO, completion_request_parse
from routing.selectors import policy_get


def _decision_headers(request_id: str, decision: Decision, cache_hit: bool) -> dict:
    return {
        "X-Request-Id": request_id,
        "X-Huntaze-Model": decision.model.name,
        "X-Huntaze-Tier": decision.tier.value,
        "X-Huntaze-Category": decision.category,
        "X-Huntaze-Reason": decision.reason_code,
        "X-Huntaze-Cache": "hit" if cache_hit else "miss",
    }


def _completion_body(result: CompletionResult) -> dict:
    return {
        "id": "chatcmpl-" + result.id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": result.decision.model.name,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.content, "refusal": None},
                "finish_reason": result.finish_reason or "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": result.input_tokens,
            "completion_tokens": result.output_tokens,
            "total_tokens": result.input_tokens + result.output_tokens,
            "prompt_tokens_details": {"cached_tokens": result.cached_tokens},
        },
    }


class ChatCompletionsView(CompletionDoor):
    """`POST /v1/chat/completions`: the front door with OpenAI's body and answer."""

    wire = OPENAI

    def ask_parse(self, request: HttpRequest, body: dict) -> DoorAsk:
        completion, data = completion_request_parse(request, body)
        include_usage = bool((data.get("stream_options") or {}).get("include_usage"))
        return DoorAsk(completion, stream=data["stream"], include_usage=include_usage)

    def answer(self, result: CompletionResult) -> HttpResponse:
        headers = _decision_headers(result.id, result.decision, result.cache_hit)
        headers["X-Huntaze-Cost-Usd"] = decimal_str(result.cost_usd)
        return JsonResponse(_completion_body(result), headers=headers)

    def stream_headers(self, start: StreamStart) -> dict:
        return _decision_headers(start.id, start.decision, start.cache_hit)


def _model_object(name: str) -> dict:
    return {"id": name, "object": "model", "created": 0, "owned_by": "huntaze"}


def _routable_names(policy) -> list[str]:
    """`auto`, `auto:<category>` per enabled category, then each active model profile."""
    names = [AUTO]
    names += [f"{AUTO}:{slug}" for slug, rule in policy.categories.items() if rule.enabled]
    names += [name for name, model in policy.models.items() if model.active]
    return names


async def _routable_names_for(request: HttpRequest) -> list[str]:
    await api_key_authenticate(request)
    return _routable_names(await db_call(policy_get))


class ModelListView(DoorView):
    wire = OPENAI
    http_method_names = ["get"]

    async def get(self, request: HttpRequest) -> HttpResponse:
        try:
            names = await _routable_names_for(request)
        except Exception as exc:  # noqa: BLE001 - answered OpenAI-shaped
            return self.wire.error_response(exc)
        return JsonResponse({"object": "list", "data": [_model_object(name) for name in names]})


class ModelRetrieveView(DoorView):
    """`GET /v1/models/<id>` (the SDK's models.retrieve): each id the list shows."""

    wire = OPENAI
    http_method_names = ["get"]

    async def get(self, request: HttpRequest, model: str) -> HttpResponse:
        try:
            names = await _routable_names_for(request)
            if model not in names:
                message = f"The model '{model}' does not exist."
                raise Refusal(404, "model_not_found", message, field="model")
        except Exception as exc:  # noqa: BLE001 - answered OpenAI-shaped
            return self.wire.error_response(exc)
        return JsonResponse(_model_object(model))
