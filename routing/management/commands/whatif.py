import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from huntaze.progress import progress_spinner
from routing.engine import RoutingError
from routing.selectors import whatif_compare


class Command(BaseCommand):
    help = (
        "Replay the last N days of the ledger under the current policy changed by a JSON draft, "
        'e.g. {"categories": {"strategy": {"full_from_complexity": 5}}, '
        '"rollout": {"routed_percent": "50"}}, beside the same requests under the current '
        "policy and what was billed for them (as admin's What if? page). Saves nothing."
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
                report = whatif_compare(draft=draft, days=options["days"], now=timezone.now())
        except RoutingError as exc:
            raise CommandError(exc.message) from exc
        header = (
            f"{'category':<16}{'replayed':>9}{'cache hits':>11}{'failed':>7}{'actual $':>11}"
            f"{'current $':>11}{'draft $':>11}{'change $':>11}{'cheap now':>10}{'cheap draft':>12}"
        )
        self.stdout.write(header)
        for row in [*report.categories, report.total]:
            self.stdout.write(
                f"{row.category:<16}{row.requests:>9}{row.cache_hits:>11}{row.failed:>7}"
                f"{row.actual_cost_usd:>11.4f}{row.current_cost_usd:>11.4f}"
                f"{row.projected_cost_usd:>11.4f}{row.change_usd:>+11.4f}"
                f"{row.current_mini_percent:>9}%{row.projected_mini_percent:>11}%"
            )
        change = report.change_monthly_usd
        self.stdout.write(
            f"monthly (last {report.days} days x 30/days): "
            f"this draft ${report.projected_monthly_usd} against ${report.current_monthly_usd} "
            f"under the current policy ({'+' if change > 0 else ''}{change}); "
            f"actually billed ${report.actual_monthly_usd}"
        )
        self.stdout.write(
            "actual $ is what was billed for the replayed requests: it differs from current $ "
            "where they ran under other settings (an earlier rollout share's control arm, an "
            "older threshold or price), which the draft does not change. Not replayed (they "
            "cost nothing either way): response-cache hits and failed calls."
        )
