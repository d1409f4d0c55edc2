"""Reads of API keys by their secret, remembered for a short while in each worker.

The request path looks its key up on every call; a key found is kept for API_KEY_CACHE_S
seconds (a revocation or budget edit reaches other workers within that), and
`api_key_remembered` answers without any I/O, so async code can ask before paying for a
thread hop to the database. routing.api_keys, the only writer of keys, clears the memory of
its own process at once.
"""

import hashlib
import time

from django.conf import settings

from routing.models import ApiKey

_known_keys: dict[str, tuple[float, ApiKey]] = {}


def api_key_get_by_plaintext(*, plaintext: str) -> ApiKey | None:
    """Return the active key whose hash matches, or None.

    A found key is remembered for API_KEY_CACHE_S seconds, so the hot path does not read the
    database on every request; a revocation or budget edit reaches other workers within that.
    Unknown keys are never remembered (no cache to fill with guesses)."""
    remembered = api_key_remembered(plaintext=plaintext)
    if remembered is not None:
        return remembered
    digest = hashlib.sha256(plaintext.encode()).hexdigest()
    now = time.monotonic()
    api_key = ApiKey.objects.filter(key_hash=digest, revoked_at__isnull=True).first()
    if api_key is None:
        _known_keys.pop(digest, None)
    else:
        if len(_known_keys) > 10_000:
            _known_keys.clear()
        _known_keys[digest] = (now, api_key)
    return api_key


def api_key_remembered(*, plaintext: str) -> ApiKey | None:
    """Return the key if this worker looked it up within API_KEY_CACHE_S (no I/O at all, so
    async code can ask before paying for a thread hop to the database)."""
    digest = hashlib.sha256(plaintext.encode()).hexdigest()
    known = _known_keys.get(digest)
    if known is not None and time.monotonic() - known[0] < settings.API_KEY_CACHE_S:
        return known[1]
    return None


def api_key_cache_clear() -> None:
    """Forget remembered keys (a revocation in this process takes effect at once)."""
    _known_keys.clear()
