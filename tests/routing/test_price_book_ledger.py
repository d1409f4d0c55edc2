"""The price book end to end: requests through the official openai client against the sandbox
on a model that bills cache writes, reasoning, a long-context tier and service tiers; each
ledger row's line items checked against hand arithmetic on its own token counts."""

from datetime import date, timedelta
from decimal import Decimal

import openai
import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from routing.models import ModelPrice, ModelProfile
from routing.policy_versions import policy_version_create
from tests.factories import UsageRecordFactory
from tests.waits import after_response_settled
from usage.models import UsageRecord
from usage.services import usage_rollup_rebuild

D = Decimal
MTOK = D(1_000_000)
# Its name makes the sandbox answer as such a model: cache writes ("claude"), reasoning
# tokens ("reason").
MODEL = "sbx-claude-reasoner"
# About 1,500 tokens: over the sandbox's 1,024-token cache minimum and the long-context
# threshold below.
LONG = "You are a careful assistant for creators. " * 180


@pytest.fixture
def rich_model(policy):
    """The model with a price row using every rule (threshold low enough for the sandbox)."""
    profile = ModelProfile.objects.create(name=MODEL, tier="full", active=True)
    ModelPrice.objects.create(
        model=profile,
        effective_from=date(2026, 1, 1),
        input_per_mtok_usd=D("3.00"),
        cached_input_per_mtok_usd=D("0.30"),
        output_per_mtok_usd=D("15.00"),
        cache_write_5m_per_mtok_usd=D("3.75"),
        cache_write_1h_per_mtok_usd=D("6.00"),
        reasoning_per_mtok_usd=D("20.00"),
        long_context_threshold_tokens=1_000,
        long_context_input_multiplier=D("2"),
        long_context_output_multiplier=D("1.5"),
        flex_multiplier=D("0.5"),
        priority_multiplier=D("1.8"),
    )
    policy_version_create(actor="test", comment="rich model")
    return profile


@pytest.fixture
def client(asgi_server, api_key):
    return openai.OpenAI(
        api_key=api_key[1], base_url=f"{asgi_server}/v1", max_retries=0, timeout=10
    )


def _ask(client, text: str, **kwargs):
    messages = [{"role": "system", "content": LONG}, {"role": "user", "content": text}]
    return client.chat.completions.create(model=MODEL, messages=messages, **kwargs)


def _rows() -> list[UsageRecord]:
    after_response_settled()
    return list(UsageRecord.objects.order_by("created_at"))


def _hand_bill(row: UsageRecord, *, tier_multiplier: D) -> dict[str, D]:
    """The row's bill by the price list above, written out by hand."""
    writes = row.cache_write_5m_tokens + row.cache_write_1h_tokens
    plain = row.input_tokens - row.cached_tokens - writes
    items = {
        "input": plain * D("3.00"),
        "cached": row.cached_tokens * D("0.30"),
        "cache_write": row.cache_write_5m_tokens * D("3.75") + row.cache_write_1h_tokens * 6,
        "output": (row.output_tokens - row.reasoning_tokens) * D("15.00"),
        "reasoning": row.reasoning_tokens * D("20.00"),
    }
    long_context = row.input_tokens > 1_000
    surcharge = 0
    if long_context:  # the whole request: input side x2, output side x1.5
        surcharge = (items["input"] + items["cached"] + items["cache_write"]) * 1 + (
            items["output"] + items["reasoning"]
        ) * D("0.5")
    items["long_context"] = surcharge
    items["tier"] = (sum(items.values())) * (tier_multiplier - 1)
    return {k: (v / MTOK).quantize(D("0.0000000001")) for k, v in items.items()}


def _line_items(row: UsageRecord) -> dict[str, D]:
    names = ("input", "cached", "cache_write", "output", "reasoning", "long_context", "tier")
    return {n: getattr(row, f"cost_{n}_usd") for n in names}


def test_cache_writes_reasoning_long_context_and_flex_bill_exactly(client, rich_model):
    # when the same long prompt is sent twice, the second time at the flex tier
    first = _ask(client, "Summarise my week.")
    second = _ask(client, "Summarise my week.", service_tier="flex")
    one, two = _rows()
    # then the first wrote the prompt cache, the second read it; both reasoned
    assert one.cache_write_5m_tokens >= 1024 and one.cached_tokens == 0
    assert two.cached_tokens >= 1024 and two.cache_write_5m_tokens == 0
    assert one.reasoning_tokens > 0 and two.reasoning_tokens > 0
    assert (one.service_tier, two.service_tier) == ("default", "flex")
    assert one.input_tokens == first.usage.prompt_tokens > 1_000  # long context
    assert two.output_tokens == second.usage.completion_tokens
    # and every line item is the hand arithmetic, the cost their sum
    for row, multiplier in ((one, D(1)), (two, D("0.5"))):
        expected = _hand_bill(row, tier_multiplier=multiplier)
        assert _line_items(row) == expected
        assert row.cost_usd == sum(expected.values())
        assert row.price_id == rich_model.prices.get().pk
    assert two.cost_tier_usd < 0 and one.cost_long_context_usd > 0


def test_the_baseline_bills_the_same_tokens_at_the_premium_models_list_prices(client, rich_model):
    _ask(client, "Hello there.", service_tier="priority")
    (row,) = _rows()
    # gpt-4o: 2.50 in, 10.00 out; no cache, reasoning as output, no long-context tier
    baseline = (row.input_tokens * D("2.50") + row.output_tokens * D("10.00")) / MTOK
    assert row.baseline_cost_usd == baseline.quantize(D("0.0000000001"))
    assert row.service_tier == "priority"
    assert row.cost_tier_usd == ((row.cost_usd - row.cost_tier_usd) * D("0.8")).quantize(
        D("0.0000000001")
    )
    # uncached: the same model's list prices, no cache reads or writes, default tier
    listed = _hand_bill(row, tier_multiplier=D(1))
    writes_as_input = (row.cache_write_5m_tokens * (D("3.00") - D("3.75"))) / MTOK * 2
    assert row.uncached_cost_usd == (
        sum(listed.values()) + writes_as_input.quantize(D("0.0000000001"))
    )


def test_a_streamed_answer_records_reasoning_and_the_tier_served(client, rich_model):
    stream = _ask(
        client, "Stream it please.", stream=True, stream_options={"include_usage": True},
        service_tier="flex",
    )  # fmt: skip
    usage = [chunk.usage for chunk in stream if chunk.usage][-1]
    (row,) = _rows()
    assert row.streamed and row.service_tier == "flex"
    assert row.reasoning_tokens == usage.completion_tokens_details.reasoning_tokens > 0
    assert _line_items(row) == _hand_bill(row, tier_multiplier=D("0.5"))


def test_a_new_price_row_bills_from_its_day(client, rich_model, time_machine):
    # given a price change dated tomorrow (a new row; the old one keeps billing today)
    tomorrow = timezone.now().date() + timedelta(days=1)
    old = rich_model.prices.get()
    new = ModelPrice.objects.create(
        model=rich_model, effective_from=tomorrow, input_per_mtok_usd=D("1.00"),
        cached_input_per_mtok_usd=D("0.10"), output_per_mtok_usd=D("5.00"),
    )  # fmt: skip
    policy_version_create(actor="test", comment="price cut")
    _ask(client, "Before the change.")
    # when the day comes
    time_machine.move_to(timezone.now() + timedelta(days=1))
    _ask(client, "After the change.")
    # then each request billed at the row in force on its day
    before, after = _rows()
    assert (before.price_id, after.price_id) == (old.pk, new.pk)
    plain = after.input_tokens - after.cached_tokens - after.cache_write_5m_tokens
    assert after.cost_input_usd == (plain * D("1.00") / MTOK).quantize(D("0.0000000001"))
    assert after.cost_cache_write_usd == (
        after.cache_write_5m_tokens * D("1.00") / MTOK  # no write price: as input
    ).quantize(D("0.0000000001"))


def test_report_and_dashboard_show_each_line_item_summing_to_the_cent(client, rich_model):
    # given billed rows of every kind, and one row from before the price book (no breakdown)
    _ask(client, "One.")
    _ask(client, "Two.", service_tier="flex")
    _ask(client, "Three.", service_tier="priority")
    rows = _rows()
    old = UsageRecordFactory(api_key=rows[0].api_key, cost_usd=D("0.0002700000"))
    now = timezone.now()
    usage_rollup_rebuild(start=now - timedelta(hours=1), end=now + timedelta(minutes=1))
    staff = Client()
    staff.force_login(
        get_user_model().objects.create_superuser("ops", "ops@example.com", "pw-for-tests")
    )
    ledger = {n: sum(getattr(r, f"cost_{n}_usd") for r in rows) for n in _line_items(rows[0])}
    total = sum(r.cost_usd for r in rows) + old.cost_usd
    # when the month's report and today's dashboard are read
    report = staff.get("/admin/usage/usagerecord/cost-report/")
    data = staff.get("/dashboard/data.json", {"window": "today"}).json()
    # then both list every line item, equal to the ledger's, adding up to the total
    shown = {i.key: i.cost_usd for i in report.context["report"].line_items}
    assert shown == {**ledger, "unitemised": old.cost_usd}
    assert sum(shown.values()) == total == report.context["report"].total.cost_usd
    assert all(shown[k] for k in ("cache_write", "reasoning", "long_context", "cached"))
    assert shown["tier"] != 0  # flex and priority together
    page = report.content.decode()
    assert 'data-item="cache_write"' in page and "long-context surcharge" in page
    dashboard = {i["key"]: D(i["cost_usd"]) for i in data["cost_by_line_item"]}
    assert dashboard == shown
    assert D(data["cost_usd"]) == total
    csv = staff.get(f"/admin/usage/usagerecord/cost-report/{now:%Y-%m}.csv").content.decode()
    items = [line.split(",") for line in csv.splitlines() if line.startswith("line_item,")]
    assert {cells[1]: D(cells[6]) for cells in items} == shown
