import csv
import io
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
