from decimal import Decimal, InvalidOperation

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from routing.model_migration import (
    MigrationError,
    migration_cancel,
    migration_create,
    migration_finish,
    migration_qualify_start,
    migration_stage_set,
)
from routing.model_migration_models import OPEN_STATES, ModelMigration
from routing.model_migration_selectors import (
    migration_repricing,
    qualification_results,
    shutdowns_ahead,
)
from routing.models import ModelProfile
from routing.quality import percent_label

ACTOR = "manage.py migrate_model"


def _percent(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:
        raise CommandError(f"Not a percentage: {text!r}.") from None


def _model(name: str) -> ModelProfile:
    model = ModelProfile.objects.filter(name=name).first()
    if model is None:
        known = ", ".join(ModelProfile.objects.values_list("name", flat=True))
        raise CommandError(f"No model named {name!r} (known: {known}).")
    return model


def _open_migration(name: str) -> ModelMigration:
    migration = (
        ModelMigration.objects.filter(old_model=_model(name), state__in=OPEN_STATES)
        .select_related("old_model", "successor")
        .first()
    )
    if migration is None:
        raise CommandError(f"{name} has no migration under way: start one with `choose`.")
    return migration


class Command(BaseCommand):
    help = (
        "Move categories off a model to a successor, the same steps as admin's Model migrations "
        "page: status, choose OLD SUCCESSOR, reprice OLD, qualify OLD, stage OLD PERCENT, "
        "finish OLD, cancel OLD (OLD is the model being replaced)."
    )

    def add_arguments(self, parser) -> None:
        steps = parser.add_subparsers(dest="step", required=True)
        steps.add_parser("status", help="shutdowns ahead and the migrations under way")
        choose = steps.add_parser("choose", help="choose a successor (routing does not change)")
        choose.add_argument("old")
        choose.add_argument("successor")
        choose.add_argument("--categories", default="", help="comma-separated; default: all")
        choose.add_argument("--sample", default="5", help="qualification share in percent")
        reprice = steps.add_parser("reprice", help="the last 30 days re-priced on the successor")
        reprice.add_argument("old")
        qualify = steps.add_parser("qualify", help="start or resize shadow qualification")
        qualify.add_argument("old")
        qualify.add_argument("--sample", default=None, help="share in percent")
        stage = steps.add_parser(
            "stage", help="move the staged switch, an experiment (10, 50, 100, back; 0 stops it)"
        )
        stage.add_argument("old")
        stage.add_argument("percent")
        finish = steps.add_parser("finish", help="switch every category, one policy version")
        finish.add_argument("old")
        finish.add_argument("--comment", default="")
        cancel = steps.add_parser("cancel", help="give the migration up (its experiment stops)")
        cancel.add_argument("old")

    def handle(self, *args, **options) -> None:
        step = options["step"]
        try:
            if step == "status":
                return self._status()
            if step == "choose":
                return self._choose(options)
            migration = _open_migration(options["old"])
            if step == "reprice":
                return self._reprice(migration)
            if step == "qualify":
                sample = options["sample"]
                version = migration_qualify_start(
                    migration=migration,
                    sample_percent=None if sample is None else _percent(sample),
                    actor=ACTOR,
                )
            elif step == "stage":
                version = migration_stage_set(
                    migration=migration, percent=_percent(options["percent"]), actor=ACTOR
                )
            elif step == "finish":
                version = migration_finish(
                    migration=migration, actor=ACTOR, comment=options["comment"]
                )
            else:
                version = migration_cancel(migration=migration, actor=ACTOR)
        except MigrationError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(f"policy version {version.pk}: {version.comment}")

    def _choose(self, options: dict) -> None:
        categories = [c.strip() for c in options["categories"].split(",") if c.strip()]
        migration = migration_create(
            old_model=_model(options["old"]),
            successor=_model(options["successor"]),
            categories=categories,
            sample_percent=_percent(options["sample"]),
            actor=ACTOR,
        )
        self.stdout.write(
            f"successor chosen: {migration.successor.name} for {migration.old_model.name} "
            f"({', '.join(migration.categories)}); routing unchanged until qualify/stage/finish"
        )
        self._reprice(migration)

    def _reprice(self, migration: ModelMigration) -> None:
        report = migration_repricing(
            old_model=migration.old_model,
            successor=migration.successor,
            categories=migration.categories,
            now=timezone.now(),
        )
        self.stdout.write(
            f"{'category':<16}{'requests':>9}{'billed $':>12}{'current $':>12}"
            f"{'successor $':>13}{'change $':>12}"
        )
        for row in [*report.categories, report.total]:
            self.stdout.write(
                f"{row.category:<16}{row.requests:>9}{row.actual_cost_usd:>12.6f}"
                f"{row.current_cost_usd:>12.6f}{row.projected_cost_usd:>13.6f}"
                f"{row.change_usd:>+12.6f}"
            )
        self.stdout.write(f"monthly change from the switch: {report.change_monthly_usd:+} USD")

    def _status(self) -> None:
        today = timezone.now().date()
        for s in shutdowns_ahead(today=today):
            successor = s.migration.successor.name if s.migration else "none chosen"
            self.stdout.write(
                f"{s.model.name} shuts down on {s.model.shutdown_on} ({s.days_left} days left); "
                f"still on it: {', '.join(s.categories) or 'none'}; successor: {successor}"
            )
        for migration in ModelMigration.objects.filter(state__in=OPEN_STATES).select_related(
            "old_model", "successor"
        ):
            q = qualification_results(migration=migration)
            self.stdout.write(
                f"{migration.old_model.name} -> {migration.successor.name}: {migration.state}, "
                f"staged {percent_label(migration.stage_percent)}%, qualification {q.status}, "
                f"QA spend ${q.qa_cost_usd:.6f} ({q.qa_calls} calls)"
            )
            for c in q.categories:
                r = c.retained
                figure = f"{r.percent}% ({r.low_percent}-{r.high_percent})" if r.n else "-"
                self.stdout.write(f"  {c.category:<16} n={r.n:<5} retained {figure}")
