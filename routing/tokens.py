"""Token counts for the pre-call estimate.

The encoding is loaded once per process in a background thread: tiktoken downloads its
files when they are not cached, and an offline host must not hang a request on that. Until
(or unless) it loads, counts are a character-based estimate and say so.
"""

import logging
import os
import threading
from collections.abc import Iterable, Mapping

logger = logging.getLogger(__name__)

ENCODING_NAME = "o200k_base"  # gpt-4o family and successors
LOAD_WAIT_S = 5.0
CHARS_PER_TOKEN = 4
# OpenAI's chat format adds a few tokens per message and for the reply priming.
TOKENS_PER_MESSAGE = 3
TOKENS_FOR_REPLY = 3

SOURCE_TIKTOKEN = "tiktoken"
SOURCE_ESTIMATE = "estimate"

_encoding = None
_load_lock = threading.Lock()
_loader: threading.Thread | None = None
_loaded = threading.Event()


def _tiktoken_cache_dir() -> str:
    """settings.TIKTOKEN_CACHE_DIR: the one lookup, also for a sandbox run as a script."""
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        return settings.TIKTOKEN_CACHE_DIR
    except ImproperlyConfigured:  # `python -m routing.providers.sandbox`, outside Django
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "huntaze.settings")
        return settings.TIKTOKEN_CACHE_DIR


def _load_encoding() -> None:
    global _encoding
    try:
        import tiktoken

        cache_dir = _tiktoken_cache_dir()
        if cache_dir:  # tiktoken reads its folder from the environment only
            os.environ["TIKTOKEN_CACHE_DIR"] = cache_dir
        _encoding = tiktoken.get_encoding(ENCODING_NAME)
    except Exception:  # any failure (offline, corrupt cache) degrades to the estimate
        logger.warning("tiktoken %s unavailable; token counts are estimates", ENCODING_NAME)
    finally:
        _loaded.set()


def _get_encoding():
    global _loader
    if _loaded.is_set():
        return _encoding
    with _load_lock:
        if _loader is None:
            _loader = threading.Thread(target=_load_encoding, name="tiktoken-load", daemon=True)
            _loader.start()
    _loaded.wait(LOAD_WAIT_S)
    return _encoding


def count_text_tokens(text: str) -> tuple[int, str]:
    """Return the token count of a text and its source ("tiktoken" or "estimate")."""
    encoding = _get_encoding()
    if encoding is None:
        return estimate_text_tokens(text), SOURCE_ESTIMATE
    return len(encoding.encode(text, disallowed_special=())), SOURCE_TIKTOKEN


def estimate_text_tokens(text: str) -> int:
    """Return a character-based token estimate (about four characters a token)."""
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def count_message_tokens(messages: Iterable[Mapping[str, str]]) -> tuple[int, str]:
    """Return the prompt tokens of chat messages, as OpenAI counts them, and their source."""
    total = TOKENS_FOR_REPLY
    source = SOURCE_TIKTOKEN
    for message in messages:
        tokens, source = count_text_tokens(message["content"])
        total += TOKENS_PER_MESSAGE + tokens + 1  # +1 for the role
    return total, source


def encode(text: str) -> list[int] | None:
    """Return the token ids of a text, or None when the encoding is unavailable."""
    encoding = _get_encoding()
    return None if encoding is None else encoding.encode(text, disallowed_special=())
