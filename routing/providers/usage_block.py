"""An OpenAI usage block read into the counts the price book bills (pure: shared by the
live calls, streams, batch results and the sandbox's own bill)."""

from routing.pricing import served_tier

USAGE_FIELDS = (
    "input_tokens",
    "cached_tokens",
    "output_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "reasoning_tokens",
    "service_tier",
)


# The ledger's count columns hold 0 .. 2**31 - 1. A count an upstream reports outside them is
# recorded at the nearer bound: a row refused for it would be a request lost from the ledger,
# and a 32-bit driver encoder would wrap it into a small, wrong number.
MAX_COUNT = 2**31 - 1


def _bounded(value: object) -> int:
    count = int(value)
    return 0 if count < 0 else MAX_COUNT if count > MAX_COUNT else count


def _count(block: dict, *names: str) -> int:
    """The first of `names` the block reports, as a count (0 when none)."""
    for name in names:
        if block.get(name) is not None:
            return _bounded(block[name])
    return 0


def usage_parse(usage: dict, *, service_tier: object = None) -> dict:
    """Return the billed tokens of an OpenAI usage block (USAGE_FIELDS), clamped so that cache
    reads and writes fit in the prompt and reasoning in the completion, every count within
    0 .. MAX_COUNT.

    Cache writes are part of prompt_tokens, as OpenAI-compatible gateways count them:
    prompt_tokens_details.cache_write_tokens (OpenRouter), or cache_creation_input_tokens
    there or at the top (Anthropic-style); a `cache_creation` split by lifetime
    (ephemeral_5m_input_tokens / ephemeral_1h_input_tokens) says which were 1-hour writes.
    OpenAI reports none: its cache writes bill as ordinary input."""
    prompt = _bounded(usage.get("prompt_tokens") or 0)  # any empty value counts as none
    completion = _bounded(usage.get("completion_tokens") or 0)
    details = usage.get("prompt_tokens_details") or {}
    cached = min(_count(details, "cached_tokens"), prompt)
    by_lifetime = usage.get("cache_creation") or {}
    one_hour = _count(by_lifetime, "ephemeral_1h_input_tokens")
    written = max(
        _count(details, "cache_write_tokens", "cache_creation_input_tokens")
        or _count(usage, "cache_creation_input_tokens"),
        one_hour + _count(by_lifetime, "ephemeral_5m_input_tokens"),
    )
    written = min(written, prompt - cached)
    one_hour = min(one_hour, written)
    reasoning = _count(usage.get("completion_tokens_details") or {}, "reasoning_tokens")
    return {
        "input_tokens": prompt,
        "cached_tokens": cached,
        "output_tokens": completion,
        "cache_write_5m_tokens": written - one_hour,
        "cache_write_1h_tokens": one_hour,
        "reasoning_tokens": min(reasoning, completion),
        "service_tier": served_tier(service_tier),
    }
