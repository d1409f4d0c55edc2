import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from tests.factories import ApiKeyFactory, PolicyVersionFactory, UsageRecordFactory
from usage.models import UsageRecord

OCTOBER = (datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))
CATEGORIES = [
    ("chatbot", "mini", "gpt-4o-mini"),
    ("moderation", "mini", "gpt-4o-mini"),
    ("marketing", "mini", "gpt-4.1-mini"),
    ("strategy", "full", "gpt-4o"),
    ("compliance", "full", "gpt-4o"),
]


def _usd(rng: random.Random, low: int, high: int) -> Decimal:
    """A ledger amount with all ten decimal places used, so sums are exact or visibly not."""
    return Decimal(rng.randint(low, high)) / Decimal(10_000_000_000)


def ledger_rows(*, start: datetime, end: datetime, count: int, seed: int = 5) -> list[UsageRecord]:
    """A varied ledger between start and end: keys, tiers, caches, batch, QA, errors, users."""
    rng = random.Random(seed)
    keys = [ApiKeyFactory(name="web-app"), ApiKeyFactory(name="backoffice")]
    policy = PolicyVersionFactory()
    span_s = int((end - start).total_seconds()) - 1
    rows = []
    for i in range(count):
        category, tier, model = CATEGORIES[i % len(CATEGORIES)]
        cost = _usd(rng, 1_000_000, 90_000_000)
        uncached = cost + _usd(rng, 0, 5_000_000)
        cache_hit = i % 11 == 0
        rows.append(
            UsageRecordFactory.build(
                created_at=start + timedelta(seconds=rng.randint(0, span_s)),
                api_key=keys[i % 3 == 0],
                policy_version=policy,
                end_user=f"fan-{i % 7}" if i % 5 else "",
                category=category,
                tier=tier,
                model=model,
                input_tokens=rng.randint(100, 4000),
                cached_tokens=rng.choice([0, 0, 64, 1024]),
                output_tokens=rng.randint(10, 900),
                latency_ms=rng.randint(80, 2500),
                cost_usd=Decimal(0) if cache_hit else cost,
                uncached_cost_usd=uncached,
                avoided_cost_usd=uncached if cache_hit else Decimal(0),
                baseline_cost_usd=uncached + _usd(rng, 0, 400_000_000),
                cache_hit=cache_hit,
                batch=i % 13 == 0,
                qa=i % 17 == 0,
                status="ok" if i % 9 else "upstream_error",
            )
        )
    for row in rows:
        row.cached_tokens = min(row.cached_tokens, row.input_tokens)
    return UsageRecord.objects.bulk_create(rows)


@pytest.fixture
def october_ledger(db) -> list[UsageRecord]:
    """120 rows in October 2026, plus one row on each side of the month."""
    rows = ledger_rows(start=OCTOBER[0], end=OCTOBER[1], count=120)
    UsageRecordFactory(created_at=OCTOBER[0] - timedelta(microseconds=1), api_key=rows[0].api_key)
    UsageRecordFactory(created_at=OCTOBER[1], api_key=rows[0].api_key)
    return rows


@pytest.fixture
def staff_client(client, db):
    user = get_user_model().objects.create_user("ops", "ops@example.com", "pw", is_staff=True)
    client.force_login(user)
    return client


@pytest.fixture
def member_client(client, db):
    user = get_user_model().objects.create_user("fan", "fan@example.com", "pw")
    client.force_login(user)
    return client
