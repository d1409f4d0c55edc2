"""API keys: create one (its plaintext is shown once, only its hash is stored) and revoke it."""

import hashlib
import secrets

from django.utils import timezone

from routing.models import ApiKey
from routing.selectors import api_key_cache_clear

API_KEY_PREFIX = "hz_"


def api_key_create(*, name: str) -> tuple[ApiKey, str]:
    """Create a key and return it with its plaintext, which is never stored."""
    plaintext = API_KEY_PREFIX + secrets.token_urlsafe(32)
    api_key = ApiKey.objects.create(
        name=name,
        prefix=plaintext[:10],
        key_hash=hashlib.sha256(plaintext.encode()).hexdigest(),
    )
    return api_key, plaintext


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """Revoke a key from now on; its ledger rows stay."""
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    api_key_cache_clear()
    return api_key
