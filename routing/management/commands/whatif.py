import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from huntaze.progress import progress_spinner
from routing.engine import RoutingError
from routing.selectors import whatif_report


class Command(BaseCommand):
    help = (
        "Replay the last N days of the ledger under the current policy changed by a JSON draft, "
        'e.g. {"categories": {"strategy": {"full_from_complexity": 5}}, '
        '"rollout": {"routed_percent": "50"}}. Saves nothing.'
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("draft", help="JSON text, or @path/to/draft.json")
        parser.add_argument("--days", type=int, default=30)

    def handle(self, *args, **options) -> None:
        text = options["draft"]
        if text.startswith("@"):
            text = Path(text[1:]).read_text()
        try:
            draft = json.loads(text)
        except ValueError as exc:
            raise CommandError(f"The draft is not JSON: {exc}") from exc
        if not isinstance(draft, dict) or options["days"] < 1:
            raise CommandError("The draft must be a JSON object and --days at least 1.")
        try:
            with progress_spinner(f"replaying {options['days']} days of the ledger"):
                report = whatif_report(draft=draft, days=options["days"], now=timezone.now())
        except RoutingError as exc:
            raise CommandError(exc.message) from exc
        header = (
            f"{'category':<16}{'requests':>9}{'actual $':>12}{'projected $':>13}{'delta $':>11}"
            f"{'cheap now':>11}{'cheap then':>12}"
        )
        self.stdout.write(header)
        for row in [*report.categories, report.total]:
            self.stdout.write(
                f"{row.category:<16}{row.requests:>9}{row.actual_cost_usd:>12.4f}"
                f"{row.projected_cost_usd:>13.4f}{row.delta_usd:>11.4f}"
                f"{row.actual_mini_percent:>10}%{row.projected_mini_percent:>11}%"
            )
        self.stdout.write(
            f"monthly: actual ${report.actual_monthly_usd}, "
            f"projected ${report.projected_monthly_usd} (last {report.days} days x 30/days)"
        )
