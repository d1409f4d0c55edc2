"""The sandbox's error answers, in OpenAI's shape, for each of its parts (chat, batches, usage
exports). A development and test double: production code never imports it."""

import json


def api_error(
    status: int, message: str, kind: str, code: str, param: str | None = None
) -> tuple[int, dict, bytes]:
    """Return an OpenAI-shaped error answer: status, headers, JSON body."""
    body = {"error": {"message": message, "type": kind, "code": code, "param": param}}
    return status, {"content-type": "application/json"}, json.dumps(body).encode()
