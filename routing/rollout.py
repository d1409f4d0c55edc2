"""Sticky assignment for the staged rollout and percentage flags: pure functions.

A subject (an end user, or the API key when there is none) hashes to one of 10,000 buckets;
it is in a share of p% when its bucket is below p x 100. Raising p only adds buckets, so a
subject never moves from the routed arm back to control while the share grows.
"""

import hashlib
from dataclasses import dataclass, field
from decimal import Decimal

BUCKETS = 10_000


def rollout_bucket(subject: str) -> int:
    """Return the subject's stable bucket in [0, 10,000)."""
    digest = hashlib.sha256(subject.encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def in_share(*, subject: str, percent: Decimal) -> bool:
    """Return whether the subject falls inside a share of `percent` (0-100) of subjects."""
    return rollout_bucket(subject) < percent * BUCKETS / 100


def rollout_subject(*, end_user: str, api_key_id: int) -> str:
    """Return who the assignment sticks to: the end user, else the calling key."""
    return f"user:{end_user}" if end_user else f"key:{api_key_id}"


@dataclass(frozen=True)
class FlagRule:
    name: str
    enabled: bool
    percent: Decimal | None = None
    api_key_ids: frozenset[int] = field(default_factory=frozenset)


def flag_on(rule: FlagRule | None, *, subject: str, api_key_id: int) -> bool:
    """Return whether a flag is on for this subject and key (an unknown flag is off)."""
    if rule is None or not rule.enabled:
        return False
    if rule.api_key_ids and api_key_id not in rule.api_key_ids:
        return False
    if rule.percent is not None:
        # Salted by flag name: each flag picks its own users, independent of the rollout.
        return in_share(subject=f"{rule.name}:{subject}", percent=rule.percent)
    return True
