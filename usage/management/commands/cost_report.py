"""The monthly cost report from a shell, through the same selector and renderer as the API."""

import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from huntaze.progress import progress_spinner
from routing.models import ApiKey
from usage.apis import month_parse
from usage.exports import report_file
from usage.management.commands.rollup_usage import rollups_rebuild_by_day
from usage.selectors import month_range, monthly_cost_report


class Command(BaseCommand):
    help = "Print or write the monthly cost report (CSV or XLSX), e.g. --month 2026-11."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--month", required=True, help="YYYY-MM")
        parser.add_argument("--format", choices=["csv", "xlsx"], default="csv")
        parser.add_argument("--output", help="File to write; default: standard output.")
        parser.add_argument("--api-key", help="Only this API key's traffic (by name).")
        parser.add_argument(
            "--rebuild", action="store_true", help="Rebuild the rollups from the ledger first."
        )

    def handle(self, *args, **options) -> None:
        try:
            year, month = month_parse(options["month"])
        except ValidationError as error:
            raise CommandError(f"--month: expected YYYY-MM, got {options['month']!r}") from error
        api_key_id = None
        if options["api_key"]:
            key = ApiKey.objects.filter(name=options["api_key"]).first()
            if key is None:
                raise CommandError(f"No API key named {options['api_key']!r}.")
            api_key_id = key.id
        if options["rebuild"]:
            start, end = month_range(year=year, month=month)
            rollups_rebuild_by_day(start=start, end=end)
        with progress_spinner(f"cost report {options['month']}"):
            report = monthly_cost_report(
                year=year, month=month, now=timezone.now(), api_key_id=api_key_id
            )
        content, _, filename = report_file(report, fmt=options["format"])
        if options["output"]:
            Path(options["output"]).write_bytes(content)
            self.stderr.write(f"wrote {options['output']} ({len(content)} bytes)")
        elif options["format"] == "csv":
            self.stdout.write(content.decode(), ending="")
        else:
            sys.stdout.buffer.write(content)
            sys.stdout.buffer.flush()
