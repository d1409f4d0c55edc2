from decimal import Decimal

import factory
from django.utils import timezone

from routing.models import ApiKey, PolicyVersion, SuccessorVerdict
from usage.models import UsageRecord


class ApiKeyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ApiKey

    name = factory.Sequence(lambda n: f"app-{n}")
    prefix = factory.Sequence(lambda n: f"hz_{n:07d}")
    key_hash = factory.Sequence(lambda n: f"{n:064x}")


class PolicyVersionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PolicyVersion

    actor = "factory"
    snapshot = factory.LazyFunction(
        lambda: {"default_category": "chatbot", "models": {}, "categories": {}}
    )


class UsageRecordFactory(factory.django.DjangoModelFactory):
    """A successful mini-tier chatbot call: 1,000 input tokens, 200 output, no cache."""

    class Meta:
        model = UsageRecord

    request_id = factory.Sequence(lambda n: f"req_{n:032x}")
    created_at = factory.LazyFunction(timezone.now)
    api_key = factory.SubFactory(ApiKeyFactory)
    policy_version = factory.SubFactory(PolicyVersionFactory)
    category = "chatbot"
    category_source = "caller"
    complexity = 1.0
    complexity_source = "estimator"
    critical = False
    tier = "mini"
    model = "gpt-4o-mini"
    reason_code = "default:mini"
    input_tokens = 1000
    cached_tokens = 0
    output_tokens = 200
    token_source = "provider"
    latency_ms = 300
    cost_usd = Decimal("0.0002700000")
    uncached_cost_usd = Decimal("0.0002700000")
    estimated_cost_usd = Decimal("0.0002700000")
    estimate_source = "tiktoken"
    baseline_cost_usd = Decimal("0.0045000000")
    baseline_model = "gpt-4o"
    price_input_per_mtok_usd = Decimal("0.15")
    price_cached_input_per_mtok_usd = Decimal("0.075")
    price_output_per_mtok_usd = Decimal("0.60")
    status = "ok"


class SuccessorVerdictFactory(factory.django.DjangoModelFactory):
    """A qualification verdict on a chatbot request: a tie in both orders."""

    class Meta:
        model = SuccessorVerdict

    request_id = factory.Sequence(lambda n: f"req_q{n:031x}")
    created_at = factory.LazyFunction(timezone.now)
    category = "chatbot"
    complexity = 1.0
    judge_model = "gpt-4o"
    verdict = "tie"
    verdict_ab = factory.SelfAttribute("verdict")
    verdict_ba = factory.SelfAttribute("verdict")
    qa_cost_usd = Decimal("0")
