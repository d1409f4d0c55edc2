import pytest
from celery.schedules import crontab
from django.conf import settings

from usage.models import MonthlyReport, UsageRollup
from usage.tasks import (
    monthly_report_generate,
    usage_rollup_rebuild_window,
    usage_rollup_refresh_recent,
)

pytestmark = pytest.mark.django_db


def test_beat_refreshes_rollups_every_minute_and_reports_on_the_first():
    schedule = {
        entry["task"]: entry["schedule"] for entry in settings.CELERY_BEAT_SCHEDULE.values()
    }
    assert schedule["usage.tasks.usage_rollup_refresh_recent"] == 60.0
    monthly = schedule["usage.tasks.monthly_report_generate_previous"]
    assert isinstance(monthly, crontab)
    assert monthly.day_of_month == {1}


def test_rebuild_task_takes_iso_strings_and_is_idempotent(october_ledger):
    # when the same window is rebuilt twice through the task
    args = ("2026-10-01T00:00:00+00:00", "2026-11-01T00:00:00+00:00")
    first = usage_rollup_rebuild_window.delay(*args).get()
    second = usage_rollup_rebuild_window.delay(*args).get()
    # then
    assert first == second
    assert UsageRollup.objects.count() == first["minute"] + first["day"]


def test_monthly_report_task_is_safe_to_rerun(october_ledger):
    first = monthly_report_generate.delay(2026, 10).get()
    second = monthly_report_generate.delay(2026, 10).get()
    assert first == second
    assert MonthlyReport.objects.count() == 2


def test_refresh_task_runs(october_ledger):
    assert set(usage_rollup_refresh_recent.delay().get()) == {"minute", "day", "end_user_day"}
