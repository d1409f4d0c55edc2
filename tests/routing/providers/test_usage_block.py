"""An upstream's usage block as the ledger records it: counts outside what a ledger column
holds are recorded at the bound, so the row is written (not refused, not wrapped)."""

import pytest

from routing.providers.usage_block import MAX_COUNT, usage_parse
from tests.factories import ApiKeyFactory, PolicyVersionFactory, UsageRecordFactory
from usage.models import UsageRecord
from usage.services import usage_record


def _usage(prompt, completion, *, cached=0, written=0, reasoning=0) -> dict:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "prompt_tokens_details": {"cached_tokens": cached, "cache_write_tokens": written},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }


def test_ordinary_counts_pass_unchanged():
    parsed = usage_parse(_usage(1200, 300, cached=1024, written=100, reasoning=50))
    assert parsed == {
        "input_tokens": 1200,
        "cached_tokens": 1024,
        "output_tokens": 300,
        "cache_write_5m_tokens": 100,
        "cache_write_1h_tokens": 0,
        "reasoning_tokens": 50,
        "service_tier": parsed["service_tier"],
    }


@pytest.mark.parametrize("huge", [2**31, 2**32 + 5, 2**63])
def test_a_count_past_the_column_is_recorded_at_its_bound(huge):
    parsed = usage_parse(_usage(huge, huge, cached=huge, reasoning=huge))
    assert parsed["input_tokens"] == parsed["output_tokens"] == MAX_COUNT
    assert parsed["cached_tokens"] == parsed["reasoning_tokens"] == MAX_COUNT


def test_a_negative_count_is_recorded_as_zero():
    parsed = usage_parse(_usage(-5, -1, cached=-3, written=-2, reasoning=-7))
    names = ("input_tokens", "output_tokens", "cached_tokens")
    assert [parsed[name] for name in names] == [0, 0, 0]
    assert parsed["cache_write_5m_tokens"] == parsed["reasoning_tokens"] == 0


@pytest.mark.django_db
def test_the_row_of_an_absurd_usage_block_is_written():
    """On every database, PostgreSQL's binary encoders included."""
    row = UsageRecordFactory.build(api_key=ApiKeyFactory(), policy_version=PolicyVersionFactory())
    fields = {f.attname: getattr(row, f.attname) for f in UsageRecord._meta.concrete_fields[1:]}
    counts = usage_parse(_usage(2**40, -4, cached=2**33))
    record = usage_record(**{**fields, **counts, "service_tier": fields["service_tier"]})
    stored = UsageRecord.objects.get(pk=record.pk)
    assert (stored.input_tokens, stored.output_tokens) == (MAX_COUNT, 0)
    assert stored.cached_tokens == MAX_COUNT


def test_an_empty_prompt_or_completion_count_is_zero_as_before():
    parsed = usage_parse({"prompt_tokens": "", "completion_tokens": None})
    assert (parsed["input_tokens"], parsed["output_tokens"]) == (0, 0)
