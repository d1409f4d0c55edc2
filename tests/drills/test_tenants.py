"""Fault drill 6: two tenants. Every read endpoint gives a key its own data only, and no
plaintext key (ours or the upstream's) is stored or echoed."""

import csv
import io
import json

import pytest
from django.db import connection
from django.utils import timezone

from routing.api_keys import api_key_create
from usage.services import usage_rollup_refresh

pytestmark = pytest.mark.django_db


def _complete(client, key: str, n: int) -> None:
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}], "category": "chatbot"})
    for _ in range(n):
        response = client.post(
            "/api/v1/completions",
            body,
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {key}",
        )
        assert response.status_code == 200


def test_drill_6_two_tenants_see_only_their_own_data(client, policy, settings):
    settings.UPSTREAM_API_KEYS = {"OPENAI_API_KEY": "sk-upstream-secret-do-not-leak"}
    tenant_a, key_a = api_key_create(name="tenant-a")
    tenant_b, key_b = api_key_create(name="tenant-b")
    _complete(client, key_a, 3)
    _complete(client, key_b, 5)
    usage_rollup_refresh(now=timezone.now())
    month = timezone.now().strftime("%Y-%m")
    seen = {}
    for name, key in (("a", key_a), ("b", key_b)):
        response = client.get(
            f"/api/v1/reports/monthly/{month}.csv", HTTP_AUTHORIZATION=f"Bearer {key}"
        )
        assert response.status_code == 200
        text = response.content.decode()
        seen[name] = text
        other = "tenant-b" if name == "a" else "tenant-a"
        assert other not in text
    totals = {
        name: next(r for r in csv.reader(io.StringIO(text)) if r and r[0].lower() == "total")
        for name, text in seen.items()
    }
    print(f"\ndrill 6: tenant a report total row {totals['a'][:3]}, tenant b {totals['b'][:3]}")
    assert "3" in totals["a"] and "5" in totals["b"]
    # no plaintext key anywhere in the database, nor in an error body
    with connection.cursor() as cursor:
        for table in ("routing_apikey", "usage_usagerecord", "routing_inflightrequest"):
            cursor.execute(f"SELECT * FROM {table}")  # noqa: S608 - fixed table names
            dump = repr(cursor.fetchall())
            for secret in (key_a, key_b, "sk-upstream-secret-do-not-leak"):
                assert secret not in dump, f"{table} holds a plaintext key"
    bad = client.post(
        "/api/v1/completions",
        "{}",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key_a}x",
    )
    assert bad.status_code == 401 and key_a not in bad.content.decode()
