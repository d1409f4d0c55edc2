"""Sticky assignment for the staged rollout, experiments and percentage flags: pure functions.

A subject (an end user, or the API key when there is none) hashes to one of 10,000 buckets;
it is in a share of p% when its bucket is below p x 100. Raising p only adds buckets, so a
subject never moves from the routed arm back to control while the share grows.
"""

import hashlib
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from routing.policy import Policy

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


@dataclass(frozen=True)
class ExperimentSplit:
    """A running experiment: the control and treatment policies, each tagged with its arm,
    and the treatment's sticky share of subjects."""

    experiment_id: int
    treatment_percent: Decimal
    salt: str  # per experiment, so each picks its own subjects ("" for the staged rollout)
    control: "Policy"
    treatment: "Policy"

    def in_treatment(self, subject: str) -> bool:
        """Return whether the subject is on the treatment arm (raising the share only adds)."""
        if self.treatment_percent >= 100:
            return True
        return in_share(subject=self.salt + subject, percent=self.treatment_percent)

    def arm_policy(self, subject: str) -> "Policy":
        """Return the arm's policy that decides and prices this subject's requests."""
        return self.treatment if self.in_treatment(subject) else self.control


def experiment_split(
    *, experiment_id: int, percent: Decimal, salt: str, control: "Policy", treatment: "Policy"
) -> "Policy":
    """Return `control` (the published policy) carrying a running experiment against
    `treatment`, with both arms precomputed so the request path only hashes the subject."""
    split = ExperimentSplit(
        experiment_id=experiment_id,
        treatment_percent=percent,
        salt=salt,
        control=replace(control, experiment_id=experiment_id, experiment_arm="control"),
        treatment=replace(
            treatment, experiment=None, experiment_id=experiment_id, experiment_arm="treatment"
        ),
    )
    return replace(control, experiment=split)
