"""Monthly cost report files: CSV (exact decimal strings) and XLSX (one sheet per section)."""

import csv
import io
from datetime import datetime

from openpyxl import Workbook

from huntaze.money import decimal_str
from usage.selectors import MonthlyCostReport, ReportLine

COLUMNS = [
    "section",
    "key",
    "requests",
    "input_tokens",
    "cached_tokens",
    "output_tokens",
    "cost_usd",
    "baseline_cost_usd",
    "savings_usd",
    "savings_percent",
    "cost_per_1k_requests_usd",
    "mini_share_percent",
    "errors",
]
SECTIONS = [
    ("total", "Total"),
    ("category", "By category"),
    ("model", "By model"),
    ("tier", "By tier"),
    ("api_key", "By API key"),
    ("end_user", "Top end users"),
]


def _lines(report: MonthlyCostReport) -> dict[str, list[ReportLine]]:
    return {
        "total": [report.total],
        "category": report.by_category,
        "model": report.by_model,
        "tier": report.by_tier,
        "api_key": report.by_api_key,
        "end_user": report.top_end_users,
    }


def _values(line: ReportLine) -> list:
    return [
        line.key,
        line.requests,
        line.input_tokens,
        line.cached_tokens,
        line.output_tokens,
        line.cost_usd,
        line.baseline_cost_usd,
        line.savings_usd,
        line.savings_percent,
        line.cost_per_1k_requests_usd,
        line.mini_share_percent,
        line.errors,
    ]


def _notes(report: MonthlyCostReport) -> list[tuple[str, object]]:
    return [
        ("month", report.label),
        ("complete", "yes" if report.complete else "no (month to date)"),
        ("projected_cost_usd", report.projected_cost_usd),
        ("projected_baseline_cost_usd", report.projected_baseline_cost_usd),
        ("qa_cost_usd (kept out of the figures above)", report.qa_cost_usd),
    ]


def _line_item_rows(report: MonthlyCostReport) -> list[list]:
    """The total's cost by line item: key, label, tokens, cost (they add up to the total)."""
    return [[i.key, i.label, i.tokens, i.cost_usd] for i in report.line_items]


def report_csv(report: MonthlyCostReport) -> bytes:
    """Return the report as CSV: one table with a section column; money as exact decimals."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for section, lines in _lines(report).items():
        for line in lines:
            writer.writerow(
                [
                    section,
                    *(decimal_str(v) if not isinstance(v, str | int) else v for v in _values(line)),
                ]
            )
    blank = [""] * (len(COLUMNS) - COLUMNS.index("cost_usd") - 1)
    for key, _label, _tokens, cost in _line_item_rows(report):
        # the total's cost by line item, in the cost_usd column: they add up to the total's
        writer.writerow(["line_item", key, "", "", "", "", decimal_str(cost), *blank])
    for name, value in _notes(report):
        writer.writerow(["note", name, value if isinstance(value, str) else decimal_str(value)])
    return out.getvalue().encode()


def report_xlsx(report: MonthlyCostReport) -> bytes:
    """Return the report as an XLSX workbook: a summary sheet, then one sheet per section."""
    workbook = Workbook()
    summary = workbook.active
    summary.title = "Summary"
    for name, value in _notes(report):
        summary.append([name, value])
    for section, title in SECTIONS:
        sheet = workbook.create_sheet(title)
        sheet.append(COLUMNS[1:])
        for line in _lines(report)[section]:
            sheet.append(_values(line))
        for row in sheet.iter_rows(min_row=2, min_col=6, max_col=8):
            for cell in row:
                cell.number_format = "#,##0.00"
    items = workbook.create_sheet("By line item")
    items.append(["line_item", "label", "tokens", "cost_usd"])
    for values in _line_item_rows(report):
        items.append(values)
    # Fixed document dates: the same report gives the same workbook metadata.
    stamp = datetime(report.year, report.month, 1)  # noqa: DTZ001 - naive is what XLSX stores
    workbook.properties.created = workbook.properties.modified = stamp
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def report_file(report: MonthlyCostReport, *, fmt: str) -> tuple[bytes, str, str]:
    """Return (content, content type, file name) of the report in one format."""
    content = report_csv(report) if fmt == "csv" else report_xlsx(report)
    scope = "" if report.api_key_id is None else f"-key{report.api_key_id}"
    return content, CONTENT_TYPES[fmt], f"huntaze-cost-report-{report.label}{scope}.{fmt}"
