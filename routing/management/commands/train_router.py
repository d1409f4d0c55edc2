from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from routing.learned import data, training


class Command(BaseCommand):
    help = (
        "Train the learned router (category, safety, needs premium) from labelled data and write "
        "a versioned artifact with its model card. New policy versions use it once it is "
        "current (--activate, the default) and an operator publishes it."
    )
    # It must run when no artifact loads: that is what it repairs.
    requires_system_checks = []

    def add_arguments(self, parser) -> None:
        shared = Path(settings.BASE_DIR).parent / "shared"
        parser.add_argument("--traindata", type=Path, default=shared / "traindata")
        parser.add_argument("--evaldata", type=Path, default=shared / "evaldata")
        parser.add_argument("--out", type=Path, default=Path(settings.ROUTER_ARTIFACT_DIR))
        parser.add_argument("--seed", type=int, default=training.TrainingConfig.seed)
        parser.add_argument(
            "--no-activate", action="store_true", help="write the artifact, leave CURRENT alone"
        )

    def handle(self, *args, **options) -> None:
        traindata, evaldata = options["traindata"], options["evaldata"]
        if not (traindata / "categories.jsonl").is_file():
            raise CommandError(f"No labelled data in {traindata} (categories.jsonl expected).")
        rows = data.labelled_texts(
            traindata=traindata, evaldata=evaldata if evaldata.is_dir() else None
        )
        outcome_rows = data.outcomes(traindata=traindata)
        self.stdout.write(f"{len(rows):,} labelled texts, {len(outcome_rows):,} outcome rows")
        trained = training.train(rows, outcome_rows, training.TrainingConfig(seed=options["seed"]))
        path = training.write_artifact(trained, options["out"])
        if not options["no_activate"]:
            (options["out"] / "CURRENT").write_text(path.stem + "\n", encoding="utf-8")
        metrics = trained.card["held_out_metrics"]
        self.stdout.write(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
        for name, value in metrics.items():
            self.stdout.write(f"  {name}: {value}")
        if not options["no_activate"]:
            self.stdout.write(
                f"{path.stem} is current: publish it in admin (Rollout, router artifact) "
                "or with the next policy change."
            )
