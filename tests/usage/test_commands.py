import csv
import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Sum
from openpyxl import load_workbook

from tests.usage.conftest import OCTOBER
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db


def _raw_cost() -> Decimal:
    rows = UsageRecord.objects.filter(created_at__gte=OCTOBER[0], created_at__lt=OCTOBER[1])
    return rows.filter(qa=False).aggregate(cost=Sum("cost_usd"))["cost"]


def test_cost_report_prints_the_csv(october_ledger):
    out = io.StringIO()
    call_command("cost_report", "--month", "2026-10", "--format", "csv", "--rebuild", stdout=out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert rows[0]["section"] == "total"
    assert Decimal(rows[0]["cost_usd"]) == _raw_cost()


def test_cost_report_writes_xlsx_to_a_file(october_ledger, tmp_path):
    target = tmp_path / "october.xlsx"
    call_command(
        "cost_report",
        "--month",
        "2026-10",
        "--format",
        "xlsx",
        "--rebuild",
        "--output",
        str(target),
        stderr=io.StringIO(),
    )
    total = list(load_workbook(target)["Total"].iter_rows(min_row=2, values_only=True))[0]
    assert Decimal(str(total[5])).quantize(Decimal("0.01")) == _raw_cost().quantize(Decimal("0.01"))


def test_cost_report_can_be_limited_to_one_key(october_ledger):
    out = io.StringIO()
    call_command(
        "cost_report", "--month", "2026-10", "--api-key", "backoffice", "--rebuild", stdout=out
    )
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert {r["key"] for r in rows if r["section"] == "api_key"} == {"backoffice"}


@pytest.mark.parametrize("args", [["--month", "2026-13"], ["--month", "2026-10", "--api-key", "x"]])
def test_cost_report_rejects_bad_arguments(db, args):
    with pytest.raises(CommandError):
        call_command("cost_report", *args)


def test_rollup_usage_rebuilds_a_month_and_refreshes_by_default(october_ledger):
    from usage.models import UsageRollup

    out = io.StringIO()
    call_command("rollup_usage", "--month", "2026-10", stdout=out)
    assert "rebuilt 2026-10-01" in out.getvalue()
    month_requests = UsageRollup.objects.filter(granularity="day").aggregate(n=Sum("requests"))
    assert month_requests["n"] == len(october_ledger)
    call_command("rollup_usage", stdout=out)
    assert "refreshed" in out.getvalue()


def test_rollup_usage_rejects_naive_datetimes(db):
    with pytest.raises(CommandError):
        call_command("rollup_usage", "--start", "2026-10-01T00:00", "--end", "2026-10-02T00:00")


def test_rollup_rebuild_day_by_day_writes_the_rows_of_one_rebuild(october_ledger):
    from usage.management.commands.rollup_usage import rollups_rebuild_by_day
    from usage.models import UsageEndUserDay, UsageRollup
    from usage.services import usage_rollup_rebuild

    def rows() -> list[tuple]:
        rollups = UsageRollup.objects.order_by("granularity", "bucket_start", "model", "pk")
        days = UsageEndUserDay.objects.order_by("day", "end_user", "pk")
        return [
            *rollups.values_list("granularity", "bucket_start", "model", "requests", "cost_usd"),
            *days.values_list("day", "end_user", "requests", "cost_usd"),
        ]

    # given a window that starts and ends mid-day, rebuilt in one transaction
    start, end = OCTOBER[0] + timedelta(hours=7, seconds=30), OCTOBER[1] - timedelta(hours=5)
    whole = usage_rollup_rebuild(start=start, end=end)
    expected = rows()

    # when it is rebuilt one day at a time (as rollup_usage and cost_report do)
    by_day = rollups_rebuild_by_day(start=start, end=end)

    # then the same rows, counted the same
    assert rows() == expected and len(expected) > 0
    assert by_day == whole
