"""Calibration writes: apply a suggested complexity threshold as a new policy version."""

from django.db import transaction

from routing.models import PolicyVersion, TaskCategory
from routing.policy_versions import policy_version_create
from routing.quality import threshold_label


@transaction.atomic
def category_threshold_apply(
    *, category: TaskCategory, threshold: int | None, actor: str, comment: str = ""
) -> PolicyVersion:
    """Set a category's complexity threshold; return the policy version it made."""
    if threshold is not None and not 0 <= threshold <= 10:
        raise ValueError(f"threshold {threshold} outside 0-10")
    locked = TaskCategory.objects.select_for_update().get(pk=category.pk)
    before = locked.full_from_complexity
    locked.full_from_complexity = threshold
    locked.save(update_fields=["full_from_complexity", "updated_at"])
    note = comment or (
        f"calibration: {locked.slug} full from {threshold_label(before)} -> "
        f"{threshold_label(threshold)}"
    )
    return policy_version_create(actor=actor, comment=note[:500])
