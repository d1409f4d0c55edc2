"""Reconciliation of the ledger with the provider's bill: the comparison, the readers, and the
whole path offline (traffic through the sandbox, ledger, the sandbox's export, reconcile)."""

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from routing.models import ModelPrice, ModelProfile, TaskCategory
from routing.policy_versions import policy_version_create
from routing.price_book import price_row
from routing.pricing import PriceRow
from routing.providers import sandbox, sandbox_usage
from tests.factories import UsageRecordFactory
from usage.models import ProviderUsage, Reconciliation, ReconciliationStatus
from usage.provider_export import (
    OpenAIUsageClient,
    ProviderUsageImportError,
    provider_usage_csv_parse,
)
from usage.reconciliation import (
    Figures,
    provider_usage_import,
    provider_usage_reconcile,
    provider_usage_reconcile_range,
    provider_usage_reconcile_recent,
    reconciliation_compare,
)

URL = "/api/v1/completions"
TOLERANCE = Decimal("1")
LEDGER = Figures(
    requests=100,
    input_tokens=50_000,
    cached_tokens=10_000,
    output_tokens=8_000,
    cost_usd=Decimal("0.0123456789"),
)


@pytest.fixture
def export_server(settings):
    """The sandbox's HTTP server as the provider's export endpoint (it shares the in-process
    sandbox's record of what it answered)."""
    server = sandbox.serve()
    settings.PROVIDER_USAGE_BASE_URL = f"http://127.0.0.1:{server.server_port}/v1"
    settings.OPENAI_ADMIN_KEY = "sk-admin-test-not-real"
    yield server
    server.shutdown()
    server.server_close()


def _traffic(client, count: int = 6) -> None:
    """Cheap and premium calls, each text different (no response-cache hit)."""
    for i in range(count):
        category = "chatbot" if i % 2 else "legal"
        text = f"message number {i}: " + "tell me something about contracts and fans " * (i + 3)
        body = {"messages": [{"role": "user", "content": text}], "category": category}
        response = client.post(URL, data=json.dumps(body), content_type="application/json")
        assert response.status_code == 200, response.content


# --- the comparison ------------------------------------------------------------------------


def test_exact_figures_are_ok():
    # when
    result = reconciliation_compare(ledger=LEDGER, provider=LEDGER, tolerance_percent=TOLERANCE)
    # then
    assert result.status == ReconciliationStatus.OK
    assert result.max_difference_percent == 0
    assert result.differing == []


def test_difference_within_tolerance_is_ok_and_over_it_is_a_mismatch():
    # given
    close = Figures(**{**LEDGER.__dict__, "output_tokens": 8_080})  # +1.0 %
    far = Figures(**{**LEDGER.__dict__, "cost_usd": Decimal("0.0126000000")})  # +2.06 %
    # when
    ok = reconciliation_compare(ledger=LEDGER, provider=close, tolerance_percent=TOLERANCE)
    mismatch = reconciliation_compare(ledger=LEDGER, provider=far, tolerance_percent=TOLERANCE)
    # then
    assert ok.status == ReconciliationStatus.OK
    assert ok.differences["output_tokens"] == 80
    assert mismatch.status == ReconciliationStatus.MISMATCH
    assert mismatch.differing == ["cost_usd"]
    assert mismatch.differences["cost_usd"] == Decimal("0.0002543211")


def test_one_sided_day_is_missing_on_the_other_side():
    # when
    no_provider = reconciliation_compare(ledger=LEDGER, provider=None, tolerance_percent=TOLERANCE)
    no_ledger = reconciliation_compare(ledger=None, provider=LEDGER, tolerance_percent=TOLERANCE)
    # then
    assert no_provider.status == ReconciliationStatus.MISSING_PROVIDER
    assert no_ledger.status == ReconciliationStatus.MISSING_LEDGER
    assert no_ledger.differences["requests"] == 100


def test_cache_writes_that_differ_are_a_mismatch():
    # given the provider counts 500 cache-write tokens, the ledger none
    provider = Figures(**{**LEDGER.__dict__, "cache_write_tokens": 500})
    # when
    result = reconciliation_compare(ledger=LEDGER, provider=provider, tolerance_percent=TOLERANCE)
    # then
    assert result.status == ReconciliationStatus.MISMATCH
    assert result.differing == ["cache_write_tokens"]


# --- end to end: sandbox traffic -> ledger -> sandbox export -> reconcile ------------------


@pytest.mark.django_db
def test_exact_export_reconciles_quietly(api_client, policy, export_server):
    # given
    _traffic(api_client)
    today = timezone.now().date()
    # when
    result = provider_usage_reconcile_range(start=today, end=today, now=timezone.now())
    # then
    rows = {row.model: row for row in Reconciliation.objects.all()}
    assert set(rows) == {"gpt-4o-mini", "gpt-4o"}
    assert result == {"fetched": 2, "reconciled": 2, "mismatches": 0}
    for row in rows.values():
        assert row.status == ReconciliationStatus.OK
        assert row.ledger_cost_usd == row.provider_cost_usd > 0
        assert row.ledger_input_tokens == row.provider_input_tokens > 0
        assert row.cost_difference_usd == 0
    assert ProviderUsage.objects.get(model="gpt-4o").requests == 3


@pytest.mark.django_db
def test_a_model_that_writes_the_cache_reconciles_its_writes_and_cost(
    api_client, policy, export_server
):
    # given chatbot traffic on a model that bills cache writes and reasoning (the sandbox's
    # bill uses the same price list), with prompts long enough to be cached
    profile = ModelProfile.objects.create(name="sbx-claude-reasoner", tier="mini")
    row = ModelPrice.objects.create(
        model=profile, effective_from=date(2026, 1, 1), input_per_mtok_usd=Decimal("3"),
        cached_input_per_mtok_usd=Decimal("0.3"), output_per_mtok_usd=Decimal("15"),
        cache_write_5m_per_mtok_usd=Decimal("3.75"), reasoning_per_mtok_usd=Decimal("20"),
    )  # fmt: skip
    sandbox_usage.usage_log.prices[profile.name] = price_row(row)
    TaskCategory.objects.filter(slug="chatbot").update(mini_model=profile)
    policy_version_create(actor="test", comment="chatbot on a cache-writing model")
    system = "Answer as Huntaze's assistant. " * 300
    for i in range(3):
        messages = [
            {"role": "system", "content": system},
            {"role": "user", "content": f"question {i}"},
        ]
        body = {"messages": messages, "category": "chatbot"}
        response = api_client.post(URL, data=json.dumps(body), content_type="application/json")
        assert response.status_code == 200, response.content
    today = timezone.now().date()
    # when
    provider_usage_reconcile_range(start=today, end=today, now=timezone.now())
    # then the writes and the cost agree with the ledger
    rec = Reconciliation.objects.get(model=profile.name)
    assert rec.status == ReconciliationStatus.OK
    assert rec.ledger_cache_write_tokens == rec.provider_cache_write_tokens > 0
    assert rec.ledger_cost_usd == rec.provider_cost_usd > 0
    # and a bill that counts 2% more writes is a mismatch
    sandbox_usage.usage_log.skew(day=today, model=profile.name, percent="2")
    provider_usage_reconcile_range(start=today, end=today, now=timezone.now())
    rec = Reconciliation.objects.get(model=profile.name)
    assert rec.status == ReconciliationStatus.MISMATCH
    assert "cache_write_tokens" in rec.differing


@pytest.mark.django_db
def test_two_percent_skew_on_one_model_is_a_mismatch(api_client, policy, export_server):
    # given
    _traffic(api_client)
    today = timezone.now().date()
    sandbox_usage.usage_log.skew(day=today, model="gpt-4o-mini", percent="2")
    # when
    result = provider_usage_reconcile_range(start=today, end=today, now=timezone.now())
    # then
    skewed = Reconciliation.objects.get(model="gpt-4o-mini")
    assert result["mismatches"] == 1
    assert skewed.status == ReconciliationStatus.MISMATCH
    assert "cost_usd" in skewed.differing and "input_tokens" in skewed.differing
    assert Decimal("1.9") < skewed.max_difference_percent < Decimal("2.1")
    assert skewed.cost_difference_usd > 0
    assert Reconciliation.objects.get(model="gpt-4o").status == ReconciliationStatus.OK


@pytest.mark.django_db
def test_day_dropped_by_the_provider_is_missing_there(api_client, policy, export_server):
    # given
    _traffic(api_client)
    today = timezone.now().date()
    sandbox_usage.usage_log.drop_day(today)
    # when
    provider_usage_reconcile_range(start=today, end=today, now=timezone.now())
    # then
    statuses = set(Reconciliation.objects.values_list("status", flat=True))
    assert statuses == {ReconciliationStatus.MISSING_PROVIDER}
    assert not ProviderUsage.objects.exists()


@pytest.mark.django_db
def test_day_billed_without_ledger_rows_is_missing_in_the_ledger(export_server):
    # given
    day = date(2026, 11, 3)
    ProviderUsage.objects.create(
        day=day, model="gpt-4o", requests=4, input_tokens=900, cached_tokens=0,
        output_tokens=40, cost_usd=Decimal("0.00265"), source="csv_import",
        imported_at=timezone.now(),
    )  # fmt: skip
    # when
    provider_usage_reconcile(start=day, end=day, now=timezone.now())
    # then
    row = Reconciliation.objects.get()
    assert row.status == ReconciliationStatus.MISSING_LEDGER
    assert row.provider_requests == 4 and row.ledger_requests == 0


@pytest.mark.django_db
def test_dated_snapshot_is_reconciled_against_its_alias():
    # given
    day = date(2026, 11, 4)
    UsageRecordFactory(
        created_at=datetime(2026, 11, 4, 12, tzinfo=UTC), model="gpt-4o-mini",
        input_tokens=1000, cached_tokens=0, output_tokens=100, cost_usd=Decimal("0.00021"),
    )  # fmt: skip
    ProviderUsage.objects.create(
        day=day, model="gpt-4o-mini-2024-07-18", requests=1, input_tokens=1000,
        cached_tokens=0, output_tokens=100, cost_usd=Decimal("0.00021"),
        source="openai_export", imported_at=timezone.now(),
    )  # fmt: skip
    # when
    provider_usage_reconcile(start=day, end=day, now=timezone.now())
    # then
    row = Reconciliation.objects.get()
    assert (row.model, row.status) == ("gpt-4o-mini", ReconciliationStatus.OK)


@pytest.mark.django_db
def test_beat_run_does_nothing_without_an_export_or_an_imported_bill(settings):
    # given
    settings.PROVIDER_USAGE_BASE_URL = ""
    # when
    result = provider_usage_reconcile_recent(now=timezone.now())
    # then
    assert result == {"fetched": 0, "reconciled": 0, "mismatches": 0}
    assert not Reconciliation.objects.exists()


def test_export_client_follows_pages_and_keeps_cost_digits():
    # given: two daily buckets per page, three days with usage
    sandbox_usage.usage_log.prices["m"] = PriceRow(Decimal("1"), Decimal("0.5"), Decimal("3"))
    days = [date(2026, 11, d) for d in (1, 2, 3)]
    usage = {"prompt_tokens": 1234, "completion_tokens": 7,
             "prompt_tokens_details": {"cached_tokens": 1024}}  # fmt: skip
    for day in days:
        sandbox_usage.usage_log.days[(day, "m")] = sandbox_usage.SandboxUsage._empty()
        sandbox_usage.usage_log.days[(day, "m")]["requests"] = 1
        sandbox_usage.usage_log.days[(day, "m")]["input_tokens"] = usage["prompt_tokens"]
        sandbox_usage.usage_log.days[(day, "m")]["input"] = Decimal("0.000210")
        sandbox_usage.usage_log.days[(day, "m")]["output"] = Decimal("0.0000000021")
    client = OpenAIUsageClient(
        base_url="http://sandbox/v1", admin_key="k", timeout_s=5, transport=sandbox.transport()
    )
    # when
    rows = client.days(start=days[0], end=days[-1])
    # then
    assert [row.day for row in rows] == days
    assert {row.cost_usd for row in rows} == {Decimal("0.0002100021")}
    assert {row.input_tokens for row in rows} == {1234}


# --- the CSV import ------------------------------------------------------------------------

CSV_HEADER = "day,model,requests,input_tokens,cached_tokens,output_tokens,cost_usd\n"


@pytest.mark.django_db
def test_csv_import_stores_the_bill_and_reconciles_its_days():
    # given
    content = CSV_HEADER + "2026-11-05,claude-x,2,300,0,20,0.0012\n"
    # when
    result = provider_usage_import(content=content, now=timezone.now())
    # then
    assert (result.rows, result.mismatches) == (1, 1)
    stored = ProviderUsage.objects.get()
    assert (stored.source, stored.cost_usd) == ("csv_import", Decimal("0.0012"))
    assert Reconciliation.objects.get().status == ReconciliationStatus.MISSING_LEDGER


@pytest.mark.django_db
def test_csv_with_a_bad_row_names_it_and_changes_nothing():
    # given
    provider_usage_import(content=CSV_HEADER + "2026-11-05,m,1,10,0,1,0.1\n", now=timezone.now())
    before = list(ProviderUsage.objects.values_list("day", "model", "cost_usd"))
    content = CSV_HEADER + "2026-11-05,m,9,10,0,1,0.9\n2026-11-06,m,1,10,20,1,abc\n"
    # when
    with pytest.raises(ProviderUsageImportError) as error:
        provider_usage_import(content=content, now=timezone.now())
    # then
    assert error.value.errors == [
        "row 3: cost_usd 'abc' is not an amount >= 0 with at most 10 decimals"
    ]
    assert list(ProviderUsage.objects.values_list("day", "model", "cost_usd")) == before


def test_csv_header_without_required_columns_is_refused():
    with pytest.raises(ProviderUsageImportError, match="missing column"):
        provider_usage_csv_parse("day,model,requests\n2026-11-05,m,1\n")


@pytest.mark.django_db
def test_next_mornings_beat_run_finds_the_skew_set_over_http(api_client, policy, export_server):
    # given: today's traffic, and tomorrow's run (it reads yesterday and the days before)
    import httpx2

    _traffic(api_client)
    today = timezone.now().date()
    control = f"http://127.0.0.1:{export_server.server_port}/_sandbox/usage"
    skew = {"skew": [{"day": today.isoformat(), "model": "gpt-4o", "percent": "-2"}]}
    assert httpx2.post(control, json=skew).status_code == 204
    # when
    result = provider_usage_reconcile_recent(now=timezone.now() + timedelta(days=1))
    # then
    assert result == {"fetched": 2, "reconciled": 2, "mismatches": 1}
    row = Reconciliation.objects.get(status=ReconciliationStatus.MISMATCH)
    assert (row.day, row.model) == (today, "gpt-4o")
    assert row.cost_difference_usd < 0


def test_beat_schedule_runs_the_reconciliation_task_daily(settings):
    from huntaze.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["usage-provider-reconcile"]
    app.loader.import_default_modules()
    assert entry["task"] in app.tasks


@pytest.mark.django_db
def test_unreadable_export_raises_and_keeps_the_stored_figures(export_server, settings):
    # given
    from usage.provider_export import ProviderExportError

    day = date(2026, 11, 3)
    ProviderUsage.objects.create(
        day=day, model="gpt-4o", requests=1, input_tokens=10, cached_tokens=0, output_tokens=1,
        cost_usd=Decimal("0.0001"), source="openai_export", imported_at=timezone.now(),
    )  # fmt: skip
    settings.PROVIDER_USAGE_BASE_URL = f"http://127.0.0.1:{export_server.server_port}/v0"
    # when
    with pytest.raises(ProviderExportError, match="HTTP 404"):
        provider_usage_reconcile_range(start=day, end=day, now=timezone.now())
    # then
    assert ProviderUsage.objects.get().requests == 1
