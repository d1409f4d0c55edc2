"""The move of QualityEvaluation from usage to routing: only Django's state changes, so the
stored verdicts stay in their table and read back through routing's model, with their index
names, and the admin permissions and log entries follow the model's ContentType."""

from decimal import Decimal

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import Permission, User
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

BEFORE = [("usage", "0011_ledger_experiment_arm"), ("routing", "0019_migration_experiment")]
AFTER = [("routing", "0020_quality_evaluation_from_usage")]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    ContentType.objects.clear_cache()  # the migration renames a row the cache may hold
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_verdicts_permissions_and_log_entries_move_to_routing_with_the_table():
    # given a database before the move, with one verdict, a grant on it and an admin log entry
    old = _migrate(BEFORE)
    assert ContentType.objects.filter(app_label="usage", model="qualityevaluation").exists()
    key = old.get_model("routing", "ApiKey").objects.create(
        name="app", prefix="hz_0000001", key_hash="0" * 64
    )
    verdict = old.get_model("usage", "QualityEvaluation").objects.create(
        request_id="req-1", created_at=timezone.now(), api_key_id=key.pk, category="chatbot",
        complexity=2.5, cheap_model="gpt-4o-mini", premium_model="gpt-4o", judge_model="gpt-4o",
        verdict="tie", verdict_ab="cheap_better", verdict_ba="premium_better",
        reasoning="both fine", extra_cost_usd=Decimal("0.0012345678"), features={"n": [1, 2]},
    )  # fmt: skip
    reviewer = User.objects.create_user("reviewer", is_staff=True)
    reviewer.user_permissions.add(
        Permission.objects.get(content_type__app_label="usage", codename="view_qualityevaluation")
    )
    old_type = ContentType.objects.get(app_label="usage", model="qualityevaluation")
    LogEntry.objects.create(
        user=reviewer, content_type=old_type, object_id=str(verdict.pk),
        object_repr="req-1: tie", action_flag=CHANGE,
    )  # fmt: skip
    # when it migrates
    _migrate(AFTER)
    # then routing's model reads the same row from the same table
    from routing.models import QualityEvaluation

    row = QualityEvaluation.objects.get(request_id="req-1")
    assert row.pk == verdict.pk and row.api_key_id == key.pk
    verdicts = (row.verdict, row.verdict_ab, row.verdict_ba)
    assert verdicts == ("tie", "cheap_better", "premium_better")
    assert row.extra_cost_usd == Decimal("0.0012345678") and row.features == {"n": [1, 2]}
    assert row.at_least_as_good
    assert QualityEvaluation._meta.db_table == "usage_qualityevaluation"
    with connection.cursor() as cursor:
        names = connection.introspection.get_constraints(cursor, "usage_qualityevaluation")
    assert "usage_quali_categor_730e81_idx" in names
    # and the ContentType row moved (same id), so the grant and the log entry follow it
    moved = ContentType.objects.get(app_label="routing", model="qualityevaluation")
    assert moved.pk == old_type.pk and moved.model_class() is QualityEvaluation
    assert not ContentType.objects.filter(app_label="usage", model="qualityevaluation").exists()
    assert User.objects.get(pk=reviewer.pk).has_perm("routing.view_qualityevaluation")
    assert LogEntry.objects.get().get_edited_object() == row
    # and going back gives usage its ContentType again, the row untouched
    _migrate(BEFORE)
    assert ContentType.objects.get(app_label="usage", model="qualityevaluation").pk == moved.pk
    assert old.get_model("usage", "QualityEvaluation").objects.get().request_id == "req-1"
    # and the schema is left at the latest migration for the tests after this one
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    ContentType.objects.clear_cache()
