"""API keys: create one (its plaintext is shown once, only its hash is stored), re-issue the
secret of a named one, and revoke it."""

import hashlib
import secrets

from django.utils import timezone

from routing.api_key_selectors import api_key_cache_clear
from routing.models import ApiKey

API_KEY_PREFIX = "hz_"


def _new_secret() -> tuple[str, dict]:
    plaintext = API_KEY_PREFIX + secrets.token_urlsafe(32)
    stored = {"prefix": plaintext[:10], "key_hash": hashlib.sha256(plaintext.encode()).hexdigest()}
    return plaintext, stored


def api_key_create(*, name: str) -> tuple[ApiKey, str]:
    """Create a key and return it with its plaintext, which is never stored."""
    plaintext, stored = _new_secret()
    return ApiKey.objects.create(name=name, **stored), plaintext


def api_key_reissue(*, name: str) -> tuple[ApiKey, str]:
    """Return the key of this name with a new plaintext (the old one stops working), creating
    the key when there is none: a tool run again keeps one key and one ledger trail.

    Raises ValueError for a revoked key: a revocation is undone by no tool."""
    api_key = ApiKey.objects.filter(name=name).first()
    if api_key is None:
        return api_key_create(name=name)
    if api_key.revoked_at is not None:
        raise ValueError(f"the API key '{name}' is revoked")
    plaintext, stored = _new_secret()
    ApiKey.objects.filter(pk=api_key.pk).update(**stored)
    api_key.refresh_from_db()
    api_key_cache_clear()  # the old plaintext stops working in this process at once
    return api_key, plaintext


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """Revoke a key from now on; its ledger rows stay."""
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    api_key_cache_clear()
    return api_key
