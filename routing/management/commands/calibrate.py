"""Suggest per category the cheapest complexity threshold that keeps quality above its floor."""

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from huntaze.progress import progress_spinner
from routing.calibration import category_threshold_apply
from routing.models import TaskCategory
from routing.quality import percent_label, threshold_label
from routing.quality_selectors import CategoryCalibration, calibration_report


def calibration_lines(report: list[CategoryCalibration], *, detail: bool = True) -> list[str]:
    """Return the calibration as text: a line per category, with its table when `detail`."""
    lines = []
    for cal in report:
        suggestion = (
            threshold_label(cal.suggestion.threshold) if cal.suggestion else "none (too few)"
        )
        change = ""
        if cal.changes:
            change = (
                f" (${cal.suggestion.projected_monthly_usd}/month against "
                f"${cal.current_row.projected_monthly_usd} now)"
            )
        lines.append(
            f"{cal.category}: full from {threshold_label(cal.current)} now, floor "
            f"{percent_label(cal.floor_percent)}%, {cal.evaluations} evaluations, "
            f"suggested {suggestion}{change}"
        )
        if not detail:
            continue
        lines.append(
            f"  {'full from':<10}{'retained':>9}{'Wilson 95%':>16}{'n':>6}{'$/month':>11}  note"
        )
        for row in cal.rows:
            r = row.retained
            interval = f"{r.low_percent}-{r.high_percent}" if r.n else "-"
            notes = []
            if row.threshold == cal.current:
                notes.append("current")
            if cal.suggestion is not None and row.threshold == cal.suggestion.threshold:
                notes.append("suggested")
            if not row.supported:
                notes.append("not covered by evaluations")
            elif row.meets_floor:
                notes.append("meets floor")
            percent = f"{r.percent}%" if r.n else "-"
            lines.append(
                f"  {row.label:<10}{percent:>9}{interval:>16}{r.n:>6}"
                f"{row.projected_monthly_usd:>11}  {', '.join(notes)}"
            )
    return lines


class Command(BaseCommand):
    help = (
        "Print, per category, projected quality retained (from shadow evaluations) and "
        "projected monthly cost (what-if replay of the ledger) for every threshold, and the "
        "cheapest one meeting the category's floor. --apply makes it a policy version."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--days", type=int, default=None, help="default QUALITY_WINDOW_DAYS")
        parser.add_argument("--category", action="append", default=[], help="repeatable")
        parser.add_argument("--apply", action="store_true", help="apply the suggestions")

    def handle(self, *args, **options) -> None:
        if options["days"] is not None and options["days"] < 1:
            raise CommandError("--days must be at least 1")
        with progress_spinner("calibrating (verdicts and what-if replays)"):
            report = calibration_report(now=timezone.now(), days=options["days"])
        if options["category"]:
            report = [cal for cal in report if cal.category in options["category"]]
        for line in calibration_lines(report):
            self.stdout.write(line)
        if not options["apply"]:
            return
        for cal in report:
            if not cal.changes:
                continue
            category = TaskCategory.objects.get(slug=cal.category)
            version = category_threshold_apply(
                category=category, threshold=cal.suggestion.threshold, actor="calibrate"
            )
            self.stdout.write(
                f"applied: {cal.category} full from {threshold_label(cal.suggestion.threshold)}"
                f" (policy version {version.pk})"
            )
