"""The only writers of usage tables."""

from usage.models import UsageRecord


def usage_record(**fields) -> UsageRecord:
    """Append one ledger row; rows are never updated afterwards."""
    return UsageRecord.objects.create(**fields)
