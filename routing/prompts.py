"""Prompt assembly: the category's stable prefix first, the caller's messages after it."""

from collections.abc import Sequence


def build_messages(*, system_prompt: str, messages: Sequence[dict]) -> list[dict]:
    """Return the messages to send: the category system prompt (if any) then the caller's."""
    built = [{"role": "system", "content": system_prompt}] if system_prompt else []
    built.extend({"role": m["role"], "content": m["content"]} for m in messages)
    return built


def routable_text(messages: Sequence[dict]) -> str:
    """Return the text the classifier and the complexity estimator read: the user turns."""
    return "\n".join(m["content"] for m in messages if m["role"] == "user")
