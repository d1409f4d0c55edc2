import csv
import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from openpyxl import load_workbook

from tests.usage.conftest import OCTOBER
from usage.exports import COLUMNS, report_csv, report_xlsx
from usage.selectors import monthly_cost_report
from usage.services import usage_rollup_rebuild

pytestmark = pytest.mark.django_db


@pytest.fixture
def report(october_ledger):
    usage_rollup_rebuild(start=OCTOBER[0], end=OCTOBER[1])
    return monthly_cost_report(year=2026, month=10, now=datetime(2026, 11, 2, tzinfo=UTC))


def test_csv_has_every_section_with_exact_decimal_strings(report):
    # when
    rows = list(csv.DictReader(io.StringIO(report_csv(report).decode())))
    # then
    assert list(rows[0]) == COLUMNS
    sections = [row["section"] for row in rows]
    for section in ("total", "category", "model", "tier", "api_key", "end_user", "note"):
        assert section in sections
    total = rows[0]
    assert total["key"] == "total"
    assert int(total["requests"]) == report.total.requests
    assert Decimal(total["cost_usd"]) == report.total.cost_usd
    assert total["cost_usd"] == format(report.total.cost_usd, "f")
    assert Decimal(total["savings_usd"]) == report.total.savings_usd
    categories = [row for row in rows if row["section"] == "category"]
    assert sum(Decimal(row["cost_usd"]) for row in categories) == report.total.cost_usd
    items = [row for row in rows if row["section"] == "line_item"]
    assert sum(Decimal(row["cost_usd"]) for row in items) == report.total.cost_usd
    notes = {row["key"]: row["requests"] for row in rows if row["section"] == "note"}
    assert notes["month"] == "2026-10"
    assert Decimal(notes["qa_cost_usd (kept out of the figures above)"]) == report.qa_cost_usd


def test_xlsx_has_a_sheet_per_section_with_the_same_figures(report):
    # when
    workbook = load_workbook(io.BytesIO(report_xlsx(report)))
    # then
    assert workbook.sheetnames == [
        "Summary",
        "Total",
        "By category",
        "By model",
        "By tier",
        "By API key",
        "Top end users",
        "By line item",
    ]
    items = list(workbook["By line item"].iter_rows(min_row=2, values_only=True))
    assert [row[0] for row in items] == [item.key for item in report.line_items]
    assert sum(Decimal(str(row[3])) for row in items) == report.total.cost_usd
    header, total = list(workbook["Total"].iter_rows(values_only=True))
    assert list(header) == COLUMNS[1:]
    assert total[1] == report.total.requests
    cent = Decimal("0.01")
    assert Decimal(str(total[5])).quantize(cent) == report.total.cost_usd.quantize(cent)
    by_category = list(workbook["By category"].iter_rows(min_row=2, values_only=True))
    assert [row[0] for row in by_category] == [line.key for line in report.by_category]
    summary = dict(workbook["Summary"].iter_rows(values_only=True))
    assert summary["month"] == "2026-10"
