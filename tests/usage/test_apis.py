"""The monthly report over REST, as a client application or a staff user meets it."""

import csv
import io
import re
from decimal import Decimal

import pytest
from django.db.models import Sum
from django.utils import timezone
from openpyxl import load_workbook
from rest_framework.test import APIClient

from routing.api_keys import api_key_create
from tests.usage.conftest import OCTOBER
from usage.models import UsageRecord
from usage.services import usage_rollup_rebuild

pytestmark = pytest.mark.django_db
URL = "/api/v1/reports/monthly/2026-10"


@pytest.fixture
def rolled_up(october_ledger):
    usage_rollup_rebuild(start=OCTOBER[0], end=OCTOBER[1])
    return october_ledger


def _total_cost(**filters) -> Decimal:
    rows = UsageRecord.objects.filter(
        created_at__gte=OCTOBER[0], created_at__lt=OCTOBER[1], qa=False, **filters
    )
    return rows.aggregate(cost=Sum("cost_usd"))["cost"]


def _csv_rows(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def test_an_api_key_gets_a_csv_of_its_own_traffic_only(rolled_up):
    # given the ledger's "product" key, with a fresh plaintext for it
    key = rolled_up[0].api_key
    other, plaintext = api_key_create(name="other-app")
    UsageRecord.objects.filter(api_key=key).update(api_key=other)  # test set-up only
    usage_rollup_rebuild(start=OCTOBER[0], end=OCTOBER[1])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    # when
    response = client.get(f"{URL}.csv")
    # then
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = _csv_rows(response)
    assert Decimal(rows[0]["cost_usd"]) == _total_cost(api_key=other)
    assert Decimal(rows[0]["cost_usd"]) != _total_cost()
    assert {row["key"] for row in rows if row["section"] == "api_key"} == {"other-app"}


def test_an_api_key_with_no_traffic_gets_an_empty_report(rolled_up, api_client):
    rows = _csv_rows(api_client.get(f"{URL}.csv"))
    assert rows[0]["requests"] == "0"
    assert Decimal(rows[0]["cost_usd"]) == 0


def test_a_staff_session_gets_the_whole_ledger_as_xlsx(rolled_up, staff_client):
    # when
    response = staff_client.get(f"{URL}.xlsx")
    # then
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.openxmlformats")
    workbook = load_workbook(io.BytesIO(response.content))
    total = list(workbook["Total"].iter_rows(min_row=2, values_only=True))[0]
    cent = Decimal("0.01")
    assert Decimal(str(total[5])).quantize(cent) == _total_cost().quantize(cent)


def test_a_non_staff_session_is_refused(member_client):
    response = member_client.get(f"{URL}.csv")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


def test_an_anonymous_caller_is_refused(client, db):
    response = client.get(f"{URL}.csv")
    assert response.status_code == 401
    assert response.json()["error"]["code"] in {"missing_api_key", "not_authenticated"}


@pytest.mark.parametrize("month", ["2026-13", "2026-00", "9999-12", "1999-12", "0000-01"])
def test_a_bad_month_is_a_json_validation_error(api_client, month):
    response = api_client.get(f"/api/v1/reports/monthly/{month}.csv")
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("invalid_field", "month")
    assert "YYYY-MM, from 2000-01 to" in error["message"]


def test_months_from_2000_to_december_of_next_year_are_accepted(api_client):
    next_year = timezone.now().year + 1
    for month in ("2000-01", f"{next_year}-12"):
        assert api_client.get(f"/api/v1/reports/monthly/{month}.csv").status_code == 200
    assert api_client.get(f"/api/v1/reports/monthly/{next_year + 1}-01.csv").status_code == 400


def test_the_schema_gives_the_months_pattern(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    operation = schema["paths"]["/api/v1/reports/monthly/{month}.{fmt}"]["get"]
    (month,) = [p for p in operation["parameters"] if p["name"] == "month"]
    pattern = re.compile(month["schema"]["pattern"])
    assert pattern.match("2026-10")
    assert not any(pattern.match(m) for m in ("2026-13", "9999-12", "1999-12", "2026-1"))


def test_an_unknown_format_is_not_found(api_client):
    assert api_client.get(f"{URL}.pdf").status_code == 404
