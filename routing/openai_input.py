"""The OpenAI wire's request side: the body checked as OpenAI checks it, routing hints from
`metadata` or X-Huntaze-* headers, one CompletionRequest out. Every refusal is a front-door
Refusal naming its parameter, which the door writes in OpenAI's shape (routing.gateway.wire),
so the SDK raises its usual exceptions."""

from django.http import HttpRequest

from routing.gateway.call import CompletionRequest
from routing.gateway.wire import OPENAI, Refusal
from routing.json_input import text_check

AUTO = "auto"
# Passed through as sent; service_tier asks for flex or priority processing (billed at the
# tier the answer says it was served at).
SAMPLING_PARAMS = ("top_p", "stop", "presence_penalty", "frequency_penalty", "seed", "service_tier")
UNSUPPORTED_PARAMS = ("tools", "functions", "tool_choice", "function_call", "audio", "modalities")


def invalid(message: str, *, code: str = OPENAI.invalid_code, param=None) -> Refusal:
    """Return the 400 OpenAI answers a request it cannot take."""
    return Refusal(400, code, message, field=param)


ROLES = {"system", "developer", "user", "assistant"}


def _text_content(content, param: str) -> str:
    """Text, or a list of text parts (joined); other part types are not supported."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        for p in content
    ):
        return "".join(p["text"] for p in content)
    raise invalid(f"{param}: content must be a string or a list of text parts.", param=param)


def _messages(value) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise invalid("messages: a non-empty list of messages is required.", param="messages")
    messages = []
    for index, message in enumerate(value):
        param = f"messages[{index}]"
        if not isinstance(message, dict):
            raise invalid(f"{param}: a message must be an object.", param=param)
        role = message.get("role")
        if role not in ROLES:
            roles = ", ".join(sorted(ROLES))
            raise invalid(f"{param}.role: must be one of {roles}.", param=f"{param}.role")
        if "content" not in message:
            raise invalid(f"{param}.content: required.", param=f"{param}.content")
        name = message.get("name")
        if name is not None and not (isinstance(name, str) and len(name) <= 64):
            raise invalid(f"{param}.name: a string of at most 64 characters.", param=param)
        content = _text_content(message["content"], f"{param}.content")
        messages.append({"role": "system" if role == "developer" else role, "content": content})
    if not any(message["role"] == "user" for message in messages):
        text = "messages: at least one message with role user is required."
        raise invalid(text, code="missing_user_message", param="messages")
    return messages


def _optional_number(body: dict, name: str, *, kind: type, low, high=None):
    value = body.get(name)
    if value is None:
        return None
    # bool is an int to Python, never to JSON schema.
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f"of at least {low}"
        noun = "an integer" if kind is int else "a number"
        raise invalid(f"{name}: must be {noun} {bound}.", param=name)
    return value


def _chat_request_validated(body: dict) -> dict:
    """Check an OpenAI chat-completion body (the fields we honour); raise a 400 on the first
    problem, naming its parameter as OpenAI does."""
    model = body.get("model")
    if not isinstance(model, str) or not model or len(model) > 140:
        raise invalid("model: a model name (or auto) is required.", param="model")
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise invalid("stream: must be true or false.", param="stream")
    stream_options = body.get("stream_options")
    if stream_options is not None and not isinstance(stream_options, dict):
        raise invalid("stream_options: must be an object.", param="stream_options")
    user = body.get("user", "")
    if not isinstance(user, str) or len(user) > 128:
        raise invalid("user: a string of at most 128 characters.", param="user")
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(v, str) and len(v) <= 512 for v in metadata.values()
    ):
        message = "metadata: an object of strings of at most 512 characters."
        raise invalid(message, param="metadata")
    return {
        "model": model,
        "messages": _messages(body.get("messages")),
        "stream": stream,
        "stream_options": stream_options,
        "max_tokens": _optional_number(body, "max_tokens", kind=int, low=1),
        "max_completion_tokens": _optional_number(body, "max_completion_tokens", kind=int, low=1),
        "temperature": _optional_number(body, "temperature", kind=float, low=0, high=2),
        "n": _optional_number(body, "n", kind=int, low=1, high=1),
        "user": user,
        "metadata": metadata,
    }


def _hint(request: HttpRequest, metadata: dict, name: str) -> str | None:
    header_name = f"X-Huntaze-{name.capitalize()}"
    header = request.headers.get(header_name)
    if header is None:
        return metadata.get(name)  # the body's text is checked when it is parsed
    return text_check(header, field=header_name)  # InvalidText: the door's 400 invalid_text


def completion_request_parse(request: HttpRequest, body: dict) -> tuple[CompletionRequest, dict]:
    """Return the completion to route and the checked body (stream options, ...)."""
    for name in UNSUPPORTED_PARAMS:
        if body.get(name):
            raise invalid(f"'{name}' is not supported by this router.", param=name)
    data = _chat_request_validated(body)
    metadata = data["metadata"]
    model = data["model"]
    category = _hint(request, metadata, "category")
    if model.startswith(f"{AUTO}:"):
        category = model.split(":", 1)[1]
    pinned = None if model == AUTO or model.startswith(f"{AUTO}:") else model
    complexity = _hint(request, metadata, "complexity")
    critical = _hint(request, metadata, "critical")
    try:
        complexity = None if complexity is None else float(complexity)
    except ValueError:
        raise invalid("complexity must be a number from 0 to 10.", param="complexity") from None
    if complexity is not None and not 0 <= complexity <= 10:
        raise invalid("complexity must be a number from 0 to 10.", param="complexity")
    if critical is not None:
        if str(critical).lower() not in {"true", "false", "1", "0"}:
            raise invalid("critical must be true or false.", param="critical")
        critical = str(critical).lower() in {"true", "1"}
    messages = data["messages"]
    hints = {"category", "complexity", "critical"}
    completion = CompletionRequest(
        messages=messages,
        category=category or None,
        complexity=complexity,
        critical=critical,
        model=pinned,
        user=data["user"],
        max_tokens=data.get("max_completion_tokens") or data.get("max_tokens"),
        temperature=data.get("temperature"),
        sampling={k: body[k] for k in SAMPLING_PARAMS if body.get(k) is not None},
        metadata={k: v for k, v in metadata.items() if k not in hints},
    )
    return completion, data
