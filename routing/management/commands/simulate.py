"""Send realistic traffic through the real API path and print what the ledger says."""

import json
import random
import time
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.test import Client
from django.utils import timezone

from huntaze.progress import progress, progress_spinner
from routing.api_keys import api_key_reissue
from routing.management.commands.calibrate import calibration_lines
from routing.models import FeatureFlag, Flag, PolicyVersion, TaskCategory
from routing.policy_versions import policy_version_create, policy_version_restore
from routing.pricing import savings_percent
from routing.quality import percent_label
from routing.quality_selectors import calibration_report, quality_panel
from routing.shadow import shadow_drain
from routing.simulated_traffic import (
    CREATORS,
    PERSONA_CATEGORIES,
    REPEAT_RATE,
    TRAFFIC_MIX,
    simulated_persona,
    simulated_prompt,
)
from usage.models import Status
from usage.selectors import (
    SavingsByLayer,
    UsageSummary,
    savings_by_layer,
    usage_by_category,
    usage_summary,
)
from usage.services import usage_rollup_rebuild


def _usd(amount: Decimal) -> Decimal:
    # Display only: sandbox calls cost fractions of a cent, so show four places.
    return amount.quantize(Decimal("0.0001"))


class Command(BaseCommand):
    help = "Send realistic traffic in the brief's mix through the API and print the savings."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--requests", type=int, default=10_000)
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument(
            "--key-name",
            default="simulate",
            help="API key the traffic is sent with: reused from run to run (its secret is "
            "re-issued each time), created on the first run.",
        )
        parser.add_argument(
            "--shadow-percent",
            type=Decimal,
            default=None,
            help="Switch shadow evaluation on for this share of cheap answers per category "
            "(put back afterwards) and print the quality panel. Sandbox verdicts are synthetic.",
        )
        parser.add_argument(
            "--batch-percent",
            type=float,
            default=0.0,
            help="Share of requests of deferrable categories (analytics) sent as batch jobs "
            "through /api/v1/batches instead of live (the batch flag is switched on for the run).",
        )
        parser.add_argument(
            "--uncategorised-percent",
            type=float,
            default=10.0,
            help="Share of requests sent without a category (the classifier decides).",
        )

    def handle(self, *args, **options) -> None:
        count = options["requests"]
        if count < 1:
            raise CommandError("--requests must be at least 1")
        rng = random.Random(options["seed"])
        try:
            api_key, plaintext = api_key_reissue(name=options["key_name"])
        except ValueError as error:
            raise CommandError(f"{error}: choose another --key-name") from None
        client = Client(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
        categories, weights = zip(*TRAFFIC_MIX.items(), strict=True)
        personas = [simulated_persona(n) for n in range(CREATORS)]
        sent: dict[str, list[dict]] = {c: [] for c in categories}
        shadow_before = _shadow_start(options["shadow_percent"])
        start = timezone.now()
        failures = 0
        batch_rng, batch_bodies = random.Random(options["seed"] + 1), []
        deferrable = _deferrable_categories() if options["batch_percent"] else set()
        for _ in progress(range(count), description="requests"):
            category = rng.choices(categories, weights)[0]
            if sent[category] and rng.random() < REPEAT_RATE[category]:
                body = rng.choice(sent[category])
            else:
                messages = [{"role": "user", "content": simulated_prompt(rng, category)}]
                if category in PERSONA_CATEGORIES:
                    persona = rng.choice(personas)
                    messages.insert(0, {"role": "system", "content": persona})
                body = {"messages": messages, "user": f"fan-{rng.randrange(5000)}"}
                if rng.random() * 100 >= options["uncategorised_percent"]:
                    body["category"] = category
                sent[category].append(body)
            if body.get("category") in deferrable and (
                batch_rng.random() * 100 < options["batch_percent"]
            ):
                batch_bodies.append(body)
                continue
            response = client.post(
                "/api/v1/completions", json.dumps(body), content_type="application/json"
            )
            failures += response.status_code != 200
        if batch_bodies:
            with progress_spinner(f"{len(batch_bodies)} requests as batch jobs"):
                _batch_run(client, api_key, batch_bodies)
        end = timezone.now() + timedelta(microseconds=1)
        # Without a beat (a laptop), the dashboard's rollups would not see this run yet.
        usage_rollup_rebuild(start=start, end=end)
        total = usage_summary(start=start, end=end, api_key_id=api_key.pk)
        per_category = usage_by_category(start=start, end=end, api_key_id=api_key.pk)
        layers = savings_by_layer(start=start, end=end, api_key_id=api_key.pk)
        self._print(total, per_category, failures)
        self._print_layers(total, layers)
        if batch_bodies:
            _batch_print(self.stdout, api_key)
        if shadow_before is not None:
            _shadow_finish(self.stdout, before=shadow_before)

    def _print(
        self, total: UsageSummary, per_category: dict[str, UsageSummary], failures: int
    ) -> None:
        header = (
            f"{'category':<16}{'requests':>9}{'cheap tier':>11}{'actual $':>11}"
            f"{'all-premium $':>15}{'saved $':>10}{'saved %':>9}"
        )
        self.stdout.write(header)
        self.stdout.write("-" * len(header))
        for name, row in [*per_category.items(), ("TOTAL", total)]:
            if name == "TOTAL":
                self.stdout.write("-" * len(header))
            self.stdout.write(
                f"{name:<16}{row.requests:>9}{row.mini_share_percent:>10}%"
                f"{_usd(row.cost_usd):>11}{_usd(row.baseline_cost_usd):>15}"
                f"{_usd(row.savings_usd):>10}{row.savings_percent:>8}%"
            )
        self.stdout.write(f"failed requests: {failures} (all recorded in the ledger)")

    def _print_layers(self, total: UsageSummary, layers: SavingsByLayer) -> None:
        baseline = total.baseline_cost_usd
        self.stdout.write("")
        self.stdout.write(f"{'savings by layer':<28}{'saved $':>10}{'of baseline':>13}")
        rows = [
            ("routing (cheap tier)", layers.routing_usd),
            ("provider prompt cache", layers.prompt_cache_usd),
            ("response cache (ours)", layers.response_cache_usd),
            ("batch API (deferrable)", layers.batch_usd),
            ("all layers", layers.total_usd),
        ]
        for name, amount in rows:
            share = savings_percent(cost_usd=baseline - amount, baseline_usd=baseline)
            self.stdout.write(f"{name:<28}{_usd(amount):>10}{share:>12}%")


def _deferrable_categories() -> set[str]:
    return set(TaskCategory.objects.filter(deferrable=True).values_list("slug", flat=True))


def _batch_run(client: Client, api_key, bodies: list[dict]) -> list[str]:
    """Send the diverted requests as batch jobs and drive them to the end; return job ids.

    The batch flag is switched on for this run's key only, and the policy put back after."""
    from django.test.utils import override_settings

    from routing.batch_models import BatchJob
    from routing.rollout import rollout_subject
    from routing.selectors import policy_get
    from routing.tasks import batch_advance_due

    subject = rollout_subject(end_user="", api_key_id=api_key.pk)
    before = None
    if not policy_get().feature_on("batch", subject=subject, api_key_id=api_key.pk):
        before = PolicyVersion.objects.filter(draft=False).order_by("-id").first()
        flag, _ = FeatureFlag.objects.update_or_create(
            name=Flag.BATCH, defaults={"enabled": True, "percent": None}
        )
        flag.api_keys.set([api_key])
        policy_version_create(actor="simulate", comment="simulate: batch for its own key")
    ids = []
    size = settings.BATCH_MAX_REQUESTS
    # Polls are due at once here; with a broker, a worker does the same in parallel.
    with override_settings(BATCH_POLL_INTERVAL_S=0):
        for offset in range(0, len(bodies), size):
            chunk = bodies[offset : offset + size]
            requests = [{**b, "custom_id": f"sim-{offset + n}"} for n, b in enumerate(chunk)]
            response = client.post(
                "/api/v1/batches",
                json.dumps({"requests": requests}),
                content_type="application/json",
            )
            if response.status_code != 202:
                raise CommandError(f"batch refused: {response.status_code} {response.content!r}")
            ids.append(response.json()["id"])
        for _ in range(600):
            if not BatchJob.objects.filter(public_id__in=ids, completed_at__isnull=True).exists():
                break
            batch_advance_due()
            time.sleep(0.05)
    if before is not None:
        policy_version_restore(version=before, actor="simulate")
    return ids


def _batch_print(stdout, api_key) -> None:
    """The batch path on its own: what was sent, billed at batch price against the same
    model's list price, and what our response cache answered without sending."""
    from django.db.models import Count, Q, Sum
    from django.db.models.functions import Coalesce

    from usage.models import UsageRecord

    def total(field: str, **filters) -> Coalesce:
        return Coalesce(Sum(field, filter=Q(**filters)), Decimal("0"))

    rows = UsageRecord.objects.filter(api_key=api_key, batch=True).aggregate(
        n=Count("id"),
        ok=Count("id", filter=Q(status=Status.OK)),
        cached=Count("id", filter=Q(cache_hit=True)),
        sent_cost=total("cost_usd", cache_hit=False),
        sent_list=total("uncached_cost_usd", cache_hit=False),
        cost=total("cost_usd"),
        uncached=total("uncached_cost_usd"),
        avoided=total("avoided_cost_usd"),
        baseline=total("baseline_cost_usd"),
    )
    # The same split as savings_by_layer: on batch rows, uncached - cost - avoided is batch.
    batch_layer = rows["uncached"] - rows["cost"] - rows["avoided"]
    share = savings_percent(cost_usd=rows["sent_cost"], baseline_usd=rows["sent_list"])
    stdout.write("")
    stdout.write(
        f"batch path: {rows['n']} deferrable requests ({rows['ok']} ok, {rows['cached']} "
        f"answered by our response cache without a call)\n"
        f"  sent ones billed ${_usd(rows['sent_cost'])} at batch price against "
        f"${_usd(rows['sent_list'])} at list price ({share}% off)\n"
        f"  batch layer saved ${_usd(batch_layer)}, response cache ${_usd(rows['avoided'])}; "
        f"billed ${_usd(rows['cost'])} in all, against ${_usd(rows['baseline'])} all-premium live"
    )


def _shadow_start(percent: Decimal | None):
    """Turn shadow evaluation on for `percent` of cheap answers of every non-private category;
    return the policy version to put back afterwards (None when not asked)."""
    if percent is None:
        return None
    if not Decimal("0") < percent <= Decimal("100"):
        raise CommandError("--shadow-percent must be above 0 and at most 100")
    before = PolicyVersion.objects.filter(draft=False).order_by("-id").first()
    TaskCategory.objects.filter(private=False).update(shadow_sample_percent=percent)
    FeatureFlag.objects.update_or_create(
        name=Flag.QUALITY_SAMPLING, defaults={"enabled": True, "percent": None}
    )
    policy_version_create(actor="simulate", comment=f"simulate: shadow {percent}%")
    return before


def _shadow_finish(stdout, *, before) -> None:
    """Wait for the evaluations, print the quality panel and calibration, put the policy back."""
    with progress_spinner("shadow evaluations"):
        shadow_drain(timeout_s=600)
    panel = quality_panel(now=timezone.now() + timedelta(seconds=1))
    stdout.write("")
    for line in quality_panel_lines(panel):
        stdout.write(line)
    if settings.UPSTREAM_MODE == "sandbox":
        stdout.write(
            "(sandbox: judge verdicts are synthetic, seeded draws in which the premium model "
            "wins more often on harder requests and in harder categories; they show the "
            "pipeline and the panel as production would, not the models)"
        )
    stdout.write("")
    report = calibration_report(now=timezone.now() + timedelta(seconds=1))
    for line in calibration_lines(report, detail=False):
        stdout.write(line)
    if before is not None:
        policy_version_restore(version=before, actor="simulate")


def quality_panel_lines(panel) -> list[str]:
    """Return the quality panel as text."""
    lines = [
        f"quality retained (share of cheap answers judged at least as good as the premium "
        f"model's; Wilson 95%; last {panel.days} days; alert under the floor from "
        f"n >= {panel.min_samples})",
        f"{'category':<16}{'band':<7}{'retained':>9}{'Wilson 95%':>14}{'n':>6}{'floor':>8}  alert",
    ]
    for cat in panel.categories:
        for band, r in [("all", cat.overall), *cat.bands.items()]:
            if not r.n:
                continue
            interval = f"{r.low_percent}-{r.high_percent}"
            alert = "BELOW FLOOR" if r.below_floor else ""
            lines.append(
                f"{cat.category if band == 'all' else '':<16}{band:<7}{r.percent:>8}%"
                f"{interval:>14}{r.n:>6}{percent_label(cat.floor_percent):>7}%  {alert}"
            )
    spend = panel.qa_spend
    share = "n/a" if spend.percent_of_bill is None else f"{spend.percent_of_bill}%"
    lines.append(
        f"QA spend (shadow + judge, kept out of KPIs and savings): {panel.qa_calls} calls, "
        f"${_usd(panel.qa_cost_usd)} = {share} of the routed bill (${_usd(spend.routed_cost_usd)})"
    )
    if spend.too_high:
        lines.append(
            f"WARNING: QA spend is above {spend.warn_percent}% of the routed bill "
            "(QUALITY_QA_SPEND_WARN_PERCENT): lower the categories' shadow sample percent"
        )
    return lines
