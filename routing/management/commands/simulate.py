"""Send realistic traffic through the real API path and print what the ledger says."""

import json
import random
from datetime import timedelta
from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError
from django.test import Client
from django.utils import timezone

from routing.pricing import savings_percent
from routing.services import api_key_create
from usage.selectors import (
    SavingsByLayer,
    UsageSummary,
    savings_by_layer,
    usage_by_category,
    usage_summary,
)
from usage.services import usage_rollup_rebuild

# The brief's traffic mix (code and legal are rare: a few per ten thousand).
TRAFFIC_MIX = {
    "chatbot": 50.0,
    "moderation": 25.0,
    "marketing": 15.0,
    "analytics": 5.0,
    "strategy": 3.0,
    "analytics_plus": 1.5,
    "compliance": 0.5,
}

SUBJECTS = [
    "my new photo set",
    "the livestream",
    "my fitness program",
    "the cooking series",
    "the travel vlog",
    "my music release",
    "the behind-the-scenes pack",
]
FAN_LINES = [
    "hey babe how was your day?",
    "omg loved {s} so much!!",
    "when is the next drop?",
    "can you say hi to me in your next video?",
    "you look amazing today",
    "what's your favourite song right now?",
    "good morning sunshine",
    "I've been a fan for two years, thank you for {s}",
]
MODERATION_LINES = [
    "Flag or allow: 'you are so ugly nobody likes you'",
    "Is this spam? 'FREE followers click here'",
    "Should we remove this comment: 'I hate people like you, get lost'",
    "Moderate: 'great stream today, thanks!'",
    "Is this message hateful: 'go back to your country'",
]
MARKETING_LINES = [
    "Write an Instagram caption for {s}.",
    "Draft a promo email announcing {s}.",
    "Write three tweet variations teasing {s}.",
    "Write a TikTok hook for {s}.",
]
ANALYTICS_LINES = [
    "Summarise last week's metrics: 12,400 views, 830 new subscribers, 4.2% conversion.",
    "Which post performed best this month? Views: A 10k, B 22k, C 7k.",
    "Give me a short summary of revenue by channel: subs $4,200, tips $1,100, PPV $2,700.",
]
STRATEGY_LINES = [
    "How should I price my subscription tiers for {s}?",
    "Plan a 90-day growth strategy for {s}.",
    "Should I launch on a second platform or double down on {s}?",
]
DEEP_ANALYTICS_LINES = [
    "Run a cohort retention analysis of subscribers who joined in Q1 vs Q2.",
    "Forecast next quarter's revenue from this monthly series: 8.1k, 8.9k, 9.4k, 10.2k, 11.0k.",
    "Attribute conversions across email, TikTok and Instagram for {s}.",
]
COMPLIANCE_LINES = [
    "Does our fan data retention policy comply with GDPR for EU subscribers?",
    "Check this promotion for FTC disclosure requirements: 'I love this brand!'",
    "What age verification do we need before selling {s} in the UK?",
]
LINES = {
    "chatbot": FAN_LINES,
    "moderation": MODERATION_LINES,
    "marketing": MARKETING_LINES,
    "analytics": ANALYTICS_LINES,
    "strategy": STRATEGY_LINES,
    "analytics_plus": DEEP_ANALYTICS_LINES,
    "compliance": COMPLIANCE_LINES,
}
# Share of requests that repeat an earlier one word for word (same key): moderation sees the
# same spam again and again, dashboards ask the same summary; fans rarely repeat themselves.
REPEAT_RATE = {
    "chatbot": 0.03,
    "moderation": 0.30,
    "marketing": 0.05,
    "analytics": 0.25,
    "strategy": 0.02,
    "analytics_plus": 0.05,
    "compliance": 0.10,
}
# Categories whose calls carry the creator's persona and guidelines (about 1,100 tokens) as a
# shared system message: the prefix the provider's prompt cache can serve.
PERSONA_CATEGORIES = {"chatbot", "marketing"}
CREATORS = 20
PERSONA_WORDS = (
    "voice warm playful respectful never explicit always thank fans mention upcoming drops "
    "keep replies short use emojis sparingly avoid promises about private content"
).split()
# Additions that make a request harder, each as a complexity estimator would see it.
HARDER = [
    " Explain your reasoning step by step.",
    " Compare at least three options and analyse the trade-offs of each.",
    " Constraints: no more than 200 words, must include exactly 3 bullet points.",
    "\n| month | revenue | churn |\n|---|---|---|\n| Jan | 8100 | 4.1% |\n| Feb | 8900 | 3.8% |",
    " Then build a 6-month plan with milestones, a budget and a forecast for each month?",
    " What are the risks? How would you mitigate them? Which metric proves it worked?",
]


def _usd(amount: Decimal) -> Decimal:
    # Display only: sandbox calls cost fractions of a cent, so show four places.
    return amount.quantize(Decimal("0.0001"))


def _prompt(rng: random.Random, category: str) -> str:
    text = rng.choice(LINES[category]).format(s=rng.choice(SUBJECTS))
    if category == "chatbot":
        if rng.random() < 0.01:  # a fan in trouble: a critical trigger term
            text += " I want a refund or I'll do a chargeback."
        return text
    # Most requests are simple; a long tail stacks several harder parts.
    extra = min(int(rng.expovariate(1.0)), len(HARDER))
    return text + "".join(rng.sample(HARDER, extra))


def _persona(creator: int) -> str:
    rng = random.Random(f"persona-{creator}")
    words = [rng.choice(PERSONA_WORDS) for _ in range(1000)]
    return f"Creator #{creator} persona and guidelines: " + " ".join(words)


class Command(BaseCommand):
    help = "Send realistic traffic in the brief's mix through the API and print the savings."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--requests", type=int, default=10_000)
        parser.add_argument("--seed", type=int, default=7)
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
        name = f"simulate-{timezone.now():%Y%m%d%H%M%S%f}"
        api_key, plaintext = api_key_create(name=name)
        client = Client(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
        categories, weights = zip(*TRAFFIC_MIX.items(), strict=True)
        personas = [_persona(n) for n in range(CREATORS)]
        sent: dict[str, list[dict]] = {c: [] for c in categories}
        start = timezone.now()
        failures = 0
        for i in range(count):
            category = rng.choices(categories, weights)[0]
            if sent[category] and rng.random() < REPEAT_RATE[category]:
                body = rng.choice(sent[category])
            else:
                messages = [{"role": "user", "content": _prompt(rng, category)}]
                if category in PERSONA_CATEGORIES:
                    persona = rng.choice(personas)
                    messages.insert(0, {"role": "system", "content": persona})
                body = {"messages": messages, "user": f"fan-{rng.randrange(5000)}"}
                if rng.random() * 100 >= options["uncategorised_percent"]:
                    body["category"] = category
                sent[category].append(body)
            response = client.post(
                "/api/v1/completions", json.dumps(body), content_type="application/json"
            )
            failures += response.status_code != 200
            if (i + 1) % 2000 == 0:
                self.stderr.write(f"  {i + 1}/{count} requests sent")
        end = timezone.now() + timedelta(microseconds=1)
        # Without a beat (a laptop), the dashboard's rollups would not see this run yet.
        usage_rollup_rebuild(start=start, end=end)
        total = usage_summary(start=start, end=end, api_key_id=api_key.pk)
        per_category = usage_by_category(start=start, end=end, api_key_id=api_key.pk)
        layers = savings_by_layer(start=start, end=end, api_key_id=api_key.pk)
        self._print(total, per_category, failures)
        self._print_layers(total, layers)

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
            ("all layers", layers.total_usd),
        ]
        for name, amount in rows:
            share = savings_percent(cost_usd=baseline - amount, baseline_usd=baseline)
            self.stdout.write(f"{name:<28}{_usd(amount):>10}{share:>12}%")
