"""Rebuild the usage rollups from a shell: the last minutes (default), a month or any window."""

import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework.exceptions import ValidationError

from huntaze.progress import progress
from usage.apis import month_parse
from usage.selectors import month_range
from usage.services import usage_rollup_rebuild, usage_rollup_refresh


def rollups_rebuild_by_day(*, start: datetime, end: datetime) -> dict[str, int]:
    """usage_rollup_rebuild over [start, end), one UTC day at a time so that a terminal shows
    how far it got: the same rows (each piece is widened to whole minutes and days, and the
    pieces meet at midnights), each day in a transaction of its own."""
    edges = [start]
    midnight = start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    midnight += timedelta(days=1)
    while midnight < end:
        edges.append(midnight)
        midnight += timedelta(days=1)
    edges.append(end)
    written: Counter[str] = Counter()
    pieces = list(itertools.pairwise(edges))
    for piece_start, piece_end in progress(pieces, description="days"):
        written.update(usage_rollup_rebuild(start=piece_start, end=piece_end))
    return {name: written[name] for name in ("minute", "day", "end_user_day")}


class Command(BaseCommand):
    help = (
        "Rebuild usage rollups (what Celery beat does every minute). Without options: the last "
        "minutes; --month YYYY-MM, --days N (up to now) or --start/--end ISO datetimes."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--month", help="YYYY-MM")
        parser.add_argument("--days", type=int, help="The last N days, up to now.")
        parser.add_argument("--start", help="ISO 8601 datetime with offset")
        parser.add_argument("--end", help="ISO 8601 datetime with offset")

    def handle(self, *args, **options) -> None:
        if options["month"]:
            try:
                year, month = month_parse(options["month"])
                start, end = month_range(year=year, month=month)
            except ValidationError as error:
                raise CommandError("--month: expected YYYY-MM") from error
        elif options["days"]:
            end = timezone.now() + timedelta(minutes=1)
            start = end - timedelta(days=options["days"])
        elif options["start"] or options["end"]:
            start, end = (
                parse_datetime(options["start"] or ""),
                parse_datetime(options["end"] or ""),
            )
            if start is None or end is None or start.tzinfo is None or end.tzinfo is None:
                raise CommandError("--start and --end: ISO 8601 datetimes with an offset")
        else:
            self.stdout.write(f"refreshed: {usage_rollup_refresh()}")
            return
        written = rollups_rebuild_by_day(start=start, end=end)
        self.stdout.write(f"rebuilt {start.isoformat()} .. {end.isoformat()}: {written}")
