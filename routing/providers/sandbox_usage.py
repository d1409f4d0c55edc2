"""The sandbox's bill: what it answered per UTC day and model, served back as OpenAI's
organization usage and costs exports (GET /v1/organization/usage/completions and
/v1/organization/costs), with knobs to skew a day and model by a percentage or drop a day, so
reconciliation with the provider's bill is tested offline. A development and test double:
production code never imports it."""

import json
import re
import threading
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from urllib.parse import parse_qs, urlsplit

from huntaze.money import LEDGER_PLACES
from routing.pricing import (
    NO_PRICE,
    PRICE_COLUMNS,
    PriceRow,
    ServiceTier,
    TokenUsage,
    price_row_from_json,
    price_tokens,
    served_tier,
)
from routing.providers.sandbox_wire import api_error
from routing.providers.usage_block import usage_parse
from routing.seed_data import DEFAULT_MODELS, seeded_price_rows

# --- what the sandbox answered, served back as the provider's usage and costs exports ------


def _seeded_prices() -> dict[str, PriceRow]:
    """The seeded models' newest price rows (what the sandbox bills unless told otherwise)."""
    return {m["name"]: seeded_price_rows(m["name"])[-1] for m in DEFAULT_MODELS}


USAGE_FIELDS = ("requests", "input_tokens", "cached_tokens", "cache_write_tokens", "output_tokens")
# The costs export's line items of a model ("<model>, <item>"), as OpenAI names them, plus
# cache writes for models that bill them.
COST_ITEMS = {
    "input": "input",
    "cached_input": "cached input",
    "cache_write": "cache write",
    "output": "output",
}


class SandboxUsage:
    """Usage per UTC day and model, as a provider's bill would count it, with test knobs:
    prices (a price book row per model; the seeded list prices by default), a skew in
    percent per (day, model) and days dropped from the export."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.days: dict[tuple[date, str], dict] = {}
            self.prices = _seeded_prices()
            self.skews: dict[tuple[date, str], Decimal] = {}
            self.dropped: set[date] = set()

    def record(self, *, model: str, usage: dict, batch: bool = False, tier: str = "") -> None:
        """Count one answered call (the sandbox bills what it answered)."""
        tokens = TokenUsage.of(usage_parse(usage))
        served = ServiceTier.BATCH if batch else served_tier(tier)
        lines = price_tokens(self.prices.get(model, NO_PRICE), tokens, tier=served)
        # Its bill's line items: the surcharges fall on the input and output they multiply.
        costs = {
            "input": lines.input_usd,
            "cached_input": lines.cached_usd,
            "cache_write": lines.cache_write_usd,
            "output": lines.output_usd + lines.reasoning_usd,
        }
        costs["input"] += lines.long_context_usd + lines.tier_usd
        day = datetime.now(UTC).date()
        with self._lock:
            row = self.days.setdefault((day, model), self._empty())
            row["requests"] += 1
            row["input_tokens"] += tokens.input_tokens
            row["cached_tokens"] += tokens.cached_tokens
            row["cache_write_tokens"] += tokens.cache_write_tokens
            row["output_tokens"] += tokens.output_tokens
            for item, cost in costs.items():
                row[item] += cost

    @staticmethod
    def _empty() -> dict:
        return {**dict.fromkeys(USAGE_FIELDS, 0), **dict.fromkeys(COST_ITEMS, Decimal("0"))}

    def skew(self, *, day: date, model: str, percent: Decimal | str) -> None:
        """Report every figure of (day, model) `percent` higher (negative: lower)."""
        with self._lock:
            self.skews[(day, model)] = Decimal(str(percent))

    def drop_day(self, day: date) -> None:
        """Leave a day out of both exports, as if the provider had no record of it."""
        with self._lock:
            self.dropped.add(day)

    def exported(self, day: date) -> dict[str, dict]:
        """What the exports report for one day: model -> figures, skews applied."""
        with self._lock:
            if day in self.dropped:
                return {}
            rows = {model: dict(row) for (d, model), row in self.days.items() if d == day}
            skews = {model: p for (d, model), p in self.skews.items() if d == day}
        for model, percent in skews.items():
            if model not in rows:
                continue
            factor = 1 + percent / 100
            row = rows[model]
            for field in USAGE_FIELDS:
                row[field] = int((row[field] * factor).quantize(1, rounding=ROUND_HALF_EVEN))
            for item in COST_ITEMS:
                row[item] = (row[item] * factor).quantize(LEDGER_PLACES)
        return rows


usage_log = SandboxUsage()


# --- the organization usage and costs exports (reconciliation) ---------------------------

EXPORT_PATHS = {"/v1/organization/usage/completions": "usage", "/v1/organization/costs": "costs"}
EXPORT_DEFAULT_LIMIT = 7  # buckets per page, as OpenAI pages daily buckets


def _json_with_decimals(body: dict) -> bytes:
    """JSON with Decimals written as plain numbers, digit for digit (never through float)."""
    marked = json.dumps(body, default=lambda d: f"__decimal__{format(d, 'f')}__")
    return re.sub(r'"__decimal__(-?[0-9.]+)__"', r"\1", marked).encode()


def _usage_result(model: str | None, row: dict) -> dict:
    return {
        "object": "organization.usage.completions.result",
        "input_tokens": row["input_tokens"],
        "output_tokens": row["output_tokens"],
        "input_cached_tokens": row["cached_tokens"],
        "input_cache_write_tokens": row["cache_write_tokens"],
        "input_audio_tokens": 0,
        "output_audio_tokens": 0,
        "num_model_requests": row["requests"],
        "project_id": None,
        "user_id": None,
        "api_key_id": None,
        "model": model,
        "batch": None,
    }


def _cost_results(rows: dict[str, dict], by_line_item: bool) -> list[dict]:
    def result(value: Decimal, line_item: str | None) -> dict:
        amount = {"value": value, "currency": "usd"}
        return {"object": "organization.costs.result", "amount": amount,
                "line_item": line_item, "project_id": None}  # fmt: skip

    if not by_line_item:
        total = sum((row[item] for row in rows.values() for item in COST_ITEMS), Decimal("0"))
        return [result(total, None)] if rows else []
    return [
        result(row[item], f"{model}, {name}")
        for model, row in sorted(rows.items())
        for item, name in COST_ITEMS.items()
    ]


def handle_usage_export(method: str, target: str) -> tuple[int, dict, bytes] | None:
    """Answer GET /v1/organization/usage/completions or /costs (daily buckets from what the
    sandbox answered), or None when the path is neither."""
    url = urlsplit(target)
    kind = EXPORT_PATHS.get(url.path.rstrip("/"))
    if kind is None or method != "GET":
        return None
    query = parse_qs(url.query)
    try:
        start = datetime.fromtimestamp(int(query["start_time"][0]), UTC)
        end_s = query.get("end_time", [None])[0]
        end = datetime.fromtimestamp(int(end_s), UTC) if end_s else datetime.now(UTC)
        limit = int(query.get("limit", [EXPORT_DEFAULT_LIMIT])[0])
        offset = int(query.get("page", [0])[0])
    except (KeyError, ValueError):
        return api_error(400, "start_time is required (Unix seconds)", "invalid_request_error",
                      "invalid_value", "start_time")  # fmt: skip
    if query.get("bucket_width", ["1d"])[0] != "1d":
        return api_error(400, "the sandbox serves daily buckets only", "invalid_request_error",
                      "invalid_value", "bucket_width")  # fmt: skip
    group_by = set(query.get("group_by", []) + query.get("group_by[]", []))
    days, day = [], start.date()
    while datetime(day.year, day.month, day.day, tzinfo=UTC) < end:
        days.append(day)
        day += timedelta(days=1)
    page = days[offset : offset + limit]
    buckets = []
    for day in page:
        rows = usage_log.exported(day)
        if kind == "usage" and "model" in group_by:
            results = [_usage_result(model, row) for model, row in sorted(rows.items())]
        elif kind == "usage":
            totals = SandboxUsage._empty()
            for row in rows.values():
                for field in USAGE_FIELDS:
                    totals[field] += row[field]
            results = [_usage_result(None, totals)] if rows else []
        else:
            results = _cost_results(rows, by_line_item="line_item" in group_by)
        bucket_start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
        buckets.append({"object": "bucket", "start_time": bucket_start,
                        "end_time": bucket_start + 86_400, "results": results})  # fmt: skip
    more = offset + limit < len(days)
    body = {"object": "page", "data": buckets, "has_more": more,
            "next_page": str(offset + limit) if more else None}  # fmt: skip
    return 200, {"content-type": "application/json"}, _json_with_decimals(body)


def usage_log_configure(body: dict) -> None:
    """The HTTP sandbox's usage knobs (POST /_sandbox/usage): {"skew": [{"day", "model",
    "percent"}], "drop_days": ["2026-12-01"], "prices": {"model": {price row as the price
    book exports it, or ["in", "cached", "out"]}}, "reset": true}."""
    if body.get("reset"):
        usage_log.reset()
    for skew in body.get("skew", []):
        day = date.fromisoformat(skew["day"])
        usage_log.skew(day=day, model=skew["model"], percent=skew["percent"])
    for day in body.get("drop_days", []):
        usage_log.drop_day(date.fromisoformat(day))
    for model, prices in body.get("prices", {}).items():
        if isinstance(prices, list):
            prices = dict(zip(PRICE_COLUMNS[:3], prices, strict=True))
        usage_log.prices[model] = price_row_from_json({"effective_from": "0001-01-01", **prices})
