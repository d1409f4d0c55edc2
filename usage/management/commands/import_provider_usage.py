"""A provider's bill as CSV into the reconciliation, through the same service as admin's upload."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from usage.provider_export import CSV_OPTIONAL, CSV_REQUIRED, ProviderUsageImportError
from usage.reconciliation import provider_usage_import


class Command(BaseCommand):
    help = (
        "Import a provider's usage per day and model from a CSV file (columns: "
        f"{', '.join(CSV_REQUIRED)}; optional {', '.join(CSV_OPTIONAL)}) and reconcile its "
        "days. A bad row stops the import and changes nothing."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", help="CSV file (UTF-8), a header row first.")

    def handle(self, *args, **options) -> None:
        path = Path(options["file"])
        try:
            content = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"{path}: {exc}") from exc
        try:
            result = provider_usage_import(content=content, now=timezone.now())
        except ProviderUsageImportError as exc:
            raise CommandError(f"{path}: nothing imported:\n  " + "\n  ".join(exc.errors)) from exc
        self.stdout.write(
            f"imported {result.rows} row(s), {result.start} to {result.end}; "
            f"{result.mismatches} day/model(s) differ from the ledger"
        )
