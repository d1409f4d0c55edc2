"""The beat's reconciliation for any range of days, from a shell."""

from datetime import date, timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from usage.provider_export import ProviderExportError
from usage.reconciliation import provider_export_configured, provider_usage_reconcile_range


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(f"expected a day as YYYY-MM-DD, got {value!r}") from exc


class Command(BaseCommand):
    help = (
        "Fetch the provider's usage export of a range of UTC days (when PROVIDER_USAGE_BASE_URL "
        "is set) and reconcile it with the ledger, e.g. --start 2026-11-01 --end 2026-11-30."
    )

    def add_arguments(self, parser) -> None:
        yesterday = (timezone.now() - timedelta(days=1)).date().isoformat()
        parser.add_argument("--start", default=yesterday, help="first day (default yesterday)")
        parser.add_argument("--end", help="last day, included (default: --start)")
        parser.add_argument(
            "--no-fetch",
            action="store_true",
            help="Compare with the provider figures already stored (CSV imports, earlier fetches).",
        )

    def handle(self, *args, **options) -> None:
        start = _day(options["start"])
        end = _day(options["end"]) if options["end"] else start
        if end < start:
            raise CommandError("--end is before --start")
        fetch = not options["no_fetch"]
        if fetch and not provider_export_configured():
            raise CommandError(
                "No provider export configured (OPENAI_ADMIN_KEY or PROVIDER_USAGE_BASE_URL); "
                "use --no-fetch to compare with imported figures."
            )
        try:
            result = provider_usage_reconcile_range(
                start=start, end=end, now=timezone.now(), fetch=fetch
            )
        except ProviderExportError as exc:
            raise CommandError(f"provider export: {exc}") from exc
        self.stdout.write(
            f"{start} to {end}: fetched {result['fetched']} provider row(s), reconciled "
            f"{result['reconciled']} day/model(s), {result['mismatches']} differ"
        )
        if result["mismatches"]:
            self.stdout.write("see admin: Usage > Reconciliations")
