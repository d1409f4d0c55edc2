"""The in-flight record's JSON: what DjangoJSONEncoder writes, cleaned where needed."""

import json
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

from django.core.serializers.json import DjangoJSONEncoder

from routing.gateway.admission import storable_json


def test_storable_json_writes_what_djangos_encoder_writes():
    # given a row's kinds of values, amounts nested too
    fields = {
        "created_at": datetime(2026, 11, 24, 12, 0, 30, 123456, tzinfo=UTC),
        "cost_usd": Decimal("0.0000123456"),
        "zero_usd": Decimal("0E-10"),
        "complexity": 0.1 + 0.2,
        "metadata": {"day": date(2026, 11, 24), "id": uuid.UUID(int=7), "tip": Decimal("1.5")},
        "prompt_text": "ünïcode ✓",
        "price_id": None,
        "critical": True,
    }
    # when / then
    assert storable_json(fields) == json.dumps(fields, cls=DjangoJSONEncoder)


def test_storable_json_cleans_what_no_database_stores():
    # given text with a NUL and a lone surrogate
    fields = {"prompt_text": "a\x00b\ud800c", "cost_usd": Decimal("1")}
    # when
    dumped = storable_json(fields)
    # then
    assert json.loads(dumped) == {"prompt_text": "ab\ufffdc", "cost_usd": "1"}
