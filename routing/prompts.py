"""Prompt assembly: the category's stable prefix first, the caller's messages after it."""

import hashlib
from collections.abc import Sequence


def build_messages(*, system_prompt: str, messages: Sequence[dict]) -> list[dict]:
    """Return the messages to send: the category system prompt (if any) then the caller's."""
    built = [{"role": "system", "content": system_prompt}] if system_prompt else []
    built.extend({"role": m["role"], "content": m["content"]} for m in messages)
    return built


def routable_text(messages: Sequence[dict]) -> str:
    """Return the text the classifier and the complexity estimator read: the user turns."""
    return "\n".join(m["content"] for m in messages if m["role"] == "user")


def prefix_fingerprint(system_prompt: str) -> str:
    """Return a short hash of the stable prefix; a change means the provider cache restarts."""
    if not system_prompt:
        return ""
    return hashlib.sha256(f"system\n{system_prompt}".encode()).hexdigest()[:16]


def prompt_cache_key(category: str) -> str:
    """Return the per-category key that keeps a category's calls on the same provider cache."""
    return f"huntaze:{category}"
