"""Readers of a provider's bill, one row per UTC day and model, without touching the database:
OpenAI's organization usage and costs exports (an admin key; the SDK does not wrap them) and
a CSV of any other provider's bill.

Amounts are parsed straight into Decimal (JSON numbers included): never through float.
"""

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation

import httpx2

USAGE_PATH = "/organization/usage/completions"
COSTS_PATH = "/organization/costs"
PAGE_LIMIT = 31  # daily buckets per page (OpenAI's most)
CSV_REQUIRED = (
    "day",
    "model",
    "requests",
    "input_tokens",
    "cached_tokens",
    "output_tokens",
    "cost_usd",
)
CSV_OPTIONAL = ("cache_write_tokens", "provider")
CSV_MAX_ERRORS = 20


@dataclass(frozen=True)
class ProviderDay:
    """What the provider billed for one UTC day and model."""

    day: date
    model: str
    requests: int
    input_tokens: int  # cached input tokens included, as the ledger counts them
    cached_tokens: int
    cache_write_tokens: int
    output_tokens: int
    cost_usd: Decimal
    provider: str = "openai"


class ProviderExportError(Exception):
    """The provider's export could not be read (HTTP error, unexpected shape)."""


class ProviderUsageImportError(ValueError):
    """A CSV of a provider's bill with bad rows: each message names its row."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("; ".join(errors))


def _day_start(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


class OpenAIUsageClient:
    """GET /v1/organization/usage/completions (bucket_width=1d, group_by=model) and
    /v1/organization/costs (group_by=line_item), merged into ProviderDay rows."""

    def __init__(
        self,
        *,
        base_url: str,
        admin_key: str,
        timeout_s: float,
        transport: httpx2.BaseTransport | None = None,
    ):
        headers = {"Authorization": f"Bearer {admin_key}"} if admin_key else {}
        self._client = httpx2.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s, transport=transport
        )

    def close(self) -> None:
        self._client.close()

    def days(self, *, start: date, end: date) -> list[ProviderDay]:
        """Return the provider's rows of the days start..end (both included)."""
        window = {
            "start_time": _day_start(start),
            "end_time": _day_start(end + timedelta(days=1)),
            "bucket_width": "1d",
            "limit": PAGE_LIMIT,
        }
        usage: dict[tuple[date, str], dict] = {}
        for bucket_day, result in self._results(USAGE_PATH, {**window, "group_by": "model"}):
            if not result.get("model"):
                raise ProviderExportError("usage export result without a model (group_by=model)")
            row = usage.setdefault((bucket_day, result["model"]), dict.fromkeys(
                ("requests", "input", "cached", "cache_write", "output"), 0))  # fmt: skip
            row["requests"] += int(result.get("num_model_requests") or 0)
            row["input"] += int(result.get("input_tokens") or 0)
            row["cached"] += int(result.get("input_cached_tokens") or 0)
            # Reported by models that bill cache writes apart; absent (0) for the others.
            row["cache_write"] += int(result.get("input_cache_write_tokens") or 0)
            row["output"] += int(result.get("output_tokens") or 0)
        costs: dict[tuple[date, str], Decimal] = {}
        for bucket_day, result in self._results(COSTS_PATH, {**window, "group_by": "line_item"}):
            model = (result.get("line_item") or "").rpartition(", ")[0]
            # Line items of other products (embeddings, tools, storage) are not routed here:
            # only those of a model the completions export has that day are ours.
            if (bucket_day, model) not in usage:
                continue
            amount = (result.get("amount") or {}).get("value") or 0
            costs[(bucket_day, model)] = costs.get((bucket_day, model), Decimal("0")) + Decimal(
                str(amount)
            )
        return [
            ProviderDay(
                day=day,
                model=model,
                requests=row["requests"],
                input_tokens=row["input"],
                cached_tokens=row["cached"],
                cache_write_tokens=row["cache_write"],
                output_tokens=row["output"],
                cost_usd=costs.get((day, model), Decimal("0")),
            )
            for (day, model), row in sorted(usage.items())
        ]

    def _results(self, path: str, params: dict) -> Iterator[tuple[date, dict]]:
        """Each (bucket day, result) of every page."""
        page = None
        while True:
            query = {**params, "page": page} if page else params
            try:
                response = self._client.get(path, params=query)
            except httpx2.HTTPError as exc:
                raise ProviderExportError(f"{path}: {exc.__class__.__name__}: {exc}") from exc
            if response.status_code != 200:
                raise ProviderExportError(
                    f"{path}: HTTP {response.status_code}: {response.text[:300]}"
                )
            try:
                body = json.loads(response.content, parse_float=Decimal)
                for bucket in body["data"]:
                    day = datetime.fromtimestamp(int(bucket["start_time"]), UTC).date()
                    for result in bucket["results"]:
                        yield day, result
            except (ValueError, KeyError, TypeError) as exc:
                raise ProviderExportError(f"{path}: unexpected export shape ({exc})") from exc
            if not body.get("has_more") or not body.get("next_page"):
                return
            page = body["next_page"]


def _count(row: dict, field: str, errors: list[str], line: int) -> int:
    raw = (row.get(field) or "").strip()
    if field == "cache_write_tokens" and raw == "":
        return 0
    if not raw.isdigit():
        errors.append(f"row {line}: {field} {raw!r} is not a whole number >= 0")
        return 0
    return int(raw)


def provider_usage_csv_parse(content: str) -> list[ProviderDay]:
    """Return the rows of a provider's bill as CSV (header: day, model, requests,
    input_tokens, cached_tokens, output_tokens, cost_usd; optional cache_write_tokens,
    provider). Raises ProviderUsageImportError naming every bad row: all or nothing."""
    reader = csv.DictReader(io.StringIO(content.lstrip("\ufeff")))
    missing = [field for field in CSV_REQUIRED if field not in (reader.fieldnames or [])]
    if missing:
        raise ProviderUsageImportError([f"header: missing column(s) {', '.join(missing)}"])
    errors: list[str] = []
    rows: list[ProviderDay] = []
    seen: dict[tuple[date, str], int] = {}
    for line, row in enumerate(reader, start=2):
        if len(errors) >= CSV_MAX_ERRORS:
            errors.append("... (further rows not checked)")
            break
        try:
            day = date.fromisoformat((row.get("day") or "").strip())
        except ValueError:
            errors.append(f"row {line}: day {row.get('day')!r} is not a date (YYYY-MM-DD)")
            continue
        model = (row.get("model") or "").strip()
        if not model or len(model) > 100:
            errors.append(f"row {line}: model is empty or longer than 100 characters")
            continue
        counts = {
            f: _count(row, f, errors, line)
            for f in ("requests", "input_tokens", "cached_tokens", "cache_write_tokens")
            + ("output_tokens",)
        }
        raw_cost = (row.get("cost_usd") or "").strip()
        try:
            cost = Decimal(raw_cost)
            valid = cost.is_finite() and cost >= 0 and -cost.as_tuple().exponent <= 10
        except InvalidOperation:
            valid = False
        if not valid:
            errors.append(
                f"row {line}: cost_usd {raw_cost!r} is not an amount >= 0 with at most 10 decimals"
            )
            continue
        if counts["cached_tokens"] > counts["input_tokens"]:
            errors.append(f"row {line}: cached_tokens is more than input_tokens")
            continue
        if (day, model) in seen:
            errors.append(f"row {line}: {day} {model} already on row {seen[(day, model)]}")
            continue
        seen[(day, model)] = line
        provider = (row.get("provider") or "").strip() or "csv"
        rows.append(ProviderDay(day=day, model=model, cost_usd=cost, provider=provider, **counts))
    if errors:
        raise ProviderUsageImportError(errors)
    if not rows:
        raise ProviderUsageImportError(["the file has no rows"])
    return rows
