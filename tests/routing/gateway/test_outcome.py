"""The typed ledger row."""

from dataclasses import fields as dataclass_fields
from datetime import UTC, datetime
from decimal import Decimal

from routing.gateway.outcome import LedgerRow, Outcome
from routing.pricing import TokenUsage


def test_ledger_row_fields_are_its_columns_in_order():
    # given a row
    row = LedgerRow(
        request_id="req_1",
        created_at=datetime(2026, 11, 24, tzinfo=UTC),
        api_key_id=1,
        end_user="fan-1",
        category="chatbot",
        category_source="caller",
        complexity=2.0,
        complexity_source="caller",
        critical=False,
        tier="mini",
        model="gpt-4o-mini",
        reason_code="default",
        policy_version_id=1,
        input_tokens=10,
        cached_tokens=0,
        output_tokens=5,
        token_source="provider",
        latency_ms=12,
        cost_usd=Decimal("0.1"),
        uncached_cost_usd=Decimal("0.1"),
        estimated_cost_usd=Decimal("0.2"),
        estimate_source="tiktoken",
        baseline_cost_usd=Decimal("1"),
        baseline_model="gpt-4o",
        price_input_per_mtok_usd=Decimal("0.15"),
        price_cached_input_per_mtok_usd=Decimal("0.075"),
        price_output_per_mtok_usd=Decimal("0.6"),
        status="ok",
    )
    # when
    fields = row.fields()
    # then: every column, in the dataclass's order, with its value, and a copy
    assert list(fields) == [column.name for column in dataclass_fields(LedgerRow)]
    assert fields == {c.name: getattr(row, c.name) for c in dataclass_fields(LedgerRow)}
    fields["status"] = "changed"
    assert row.status == "ok"


def test_outcome_usage_carries_every_token_count():
    # given an outcome with every kind of token counted
    outcome = Outcome(
        input_tokens=100,
        cached_tokens=40,
        cache_write_5m_tokens=20,
        cache_write_1h_tokens=10,
        output_tokens=30,
        reasoning_tokens=12,
    )
    # when / then: the same counts as TokenUsage reads them off any object, field by field
    assert outcome.usage == TokenUsage.of(outcome)
    assert {f.name for f in dataclass_fields(TokenUsage)} <= set(Outcome.__dataclass_fields__)
