from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from huntaze.progress import progress_spinner
from routing.learned import data
from routing.learned.model import load_router
from routing.quality_selectors import verdict_features_list
from routing.selectors import policy_get


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
        parser.add_argument(
            "--examples", type=Path, default=data.TEAM_DATA_DIR, help="the team's own rows"
        )
        parser.add_argument("--out", type=Path, default=Path(settings.ROUTER_ARTIFACT_DIR))
        parser.add_argument("--seed", type=int, default=None, help="default: the config's")
        parser.add_argument(
            "--no-activate", action="store_true", help="write the artifact, leave CURRENT alone"
        )
        parser.add_argument(
            "--with-verdicts",
            action="store_true",
            help="refit needs-premium with the shadow verdicts of our own traffic (their hashed "
            "features) and print what the new model would change on them",
        )

    def handle(self, *args, **options) -> None:
        try:
            from routing.learned import training
        except ImportError as error:  # a production install: serving needs numpy only
            raise CommandError(
                f"Training needs the dev packages ({error.name} is missing): "
                "pip install -r requirements-dev.txt, or `make train-router`."
            ) from error
        traindata, evaldata = options["traindata"], options["evaldata"]
        if not (traindata / "categories.jsonl").is_file():
            raise CommandError(f"No labelled data in {traindata} (categories.jsonl expected).")
        with progress_spinner("reading labelled data"):
            rows = data.labelled_texts(
                traindata=traindata,
                evaldata=evaldata if evaldata.is_dir() else None,
                examples=options["examples"],
            )
            outcome_rows = data.outcomes(traindata=traindata)
        verdicts = []
        if options["with_verdicts"]:
            verdicts = data.verdicts_from(verdict_features_list())
            if not verdicts:
                raise CommandError("No shadow verdict kept its features yet: nothing to add.")
        self.stdout.write(
            f"{len(rows):,} labelled texts, {len(outcome_rows):,} outcome rows, "
            f"{len(verdicts):,} verdicts of our own traffic"
        )
        seed = options["seed"] if options["seed"] is not None else training.TrainingConfig.seed
        config = training.TrainingConfig(seed=seed)
        with progress_spinner("training the three models"):
            trained = training.train(rows, outcome_rows, config, verdicts)
        path = training.write_artifact(trained, options["out"])
        if verdicts:
            self._what_if(verdicts, load_router(str(path)))
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

    def _what_if(self, verdicts: list, router) -> None:
        """Per category: the share of judged requests at or above its threshold, and how many
        of the premium-better ones that catches, as routed then and with the new model."""
        policy = policy_get()
        self.stdout.write(
            f"what-if on {len(verdicts)} judged requests (thresholds of policy v{policy.version})"
        )
        self.stdout.write(
            f"{'category':<16}{'judged':>7}{'premium better':>16}{'threshold':>10}"
            f"{'premium now':>13}{'caught now':>12}{'premium new':>13}{'caught new':>12}"
        )
        by_category: dict[str, list] = {}
        for verdict in verdicts:
            by_category.setdefault(verdict.category, []).append(verdict)
        for category, judged in sorted(by_category.items()):
            rule = policy.categories.get(category)
            threshold = rule.full_from if rule else None
            new = [10 * router.needs_premium_from(v.ngrams, v.signals) for v in judged]
            better = [v.needs_premium for v in judged]
            columns = []
            for scores in ([v.complexity for v in judged], new):
                routed = [threshold is not None and s >= threshold for s in scores]
                caught = sum(r and b for r, b in zip(routed, better, strict=True))
                columns.append(f"{sum(routed) / len(judged):>13.0%}{caught:>12}")
            self.stdout.write(
                f"{category:<16}{len(judged):>7}{sum(better):>16}{threshold or '-':>10}"
                + "".join(columns)
            )
