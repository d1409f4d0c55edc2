"""The cost report page and stored reports in admin, as a staff user meets them."""

import csv
import io
import zipfile
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db.models import Sum

from tests.usage.conftest import OCTOBER
from usage.models import MonthlyReport, UsageRecord
from usage.services import monthly_report_create, usage_rollup_rebuild

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, db):
    user = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw")
    client.force_login(user)
    return client


def test_cost_report_page_shows_the_month_with_its_chart(admin_client, october_ledger):
    # given
    usage_rollup_rebuild(start=OCTOBER[0], end=OCTOBER[1])
    # when
    response = admin_client.get("/admin/usage/usagerecord/cost-report/?month=2026-10")
    # then
    assert response.status_code == 200
    report = response.context["report"]
    raw = UsageRecord.objects.filter(
        created_at__gte=OCTOBER[0], created_at__lt=OCTOBER[1], qa=False
    ).aggregate(cost=Sum("cost_usd"))
    assert report.total.cost_usd == raw["cost"]
    body = response.content.decode()
    assert 'id="cost-chart-data"' in body
    assert "js/Chart.min.js" in body
    assert "cost-report/2026-10.xlsx" in body


def test_cost_report_downloads_as_csv(admin_client, october_ledger):
    usage_rollup_rebuild(start=OCTOBER[0], end=OCTOBER[1])
    response = admin_client.get("/admin/usage/usagerecord/cost-report/2026-10.csv")
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert rows[0]["section"] == "total"
    assert int(rows[0]["requests"]) == response_requests(october_ledger)


def response_requests(rows) -> int:
    return sum(1 for row in rows if not row.qa)


def test_a_bad_month_falls_back_to_this_month_with_a_warning(admin_client):
    response = admin_client.get("/admin/usage/usagerecord/cost-report/?month=nope", follow=True)
    assert response.status_code == 200
    assert any("Unknown month" in str(m) for m in response.context["messages"])


def test_download_action_returns_one_file_or_a_zip_with_checksums(admin_client, october_ledger):
    # given the stored October files
    reports = monthly_report_create(year=2026, month=10)
    url = "/admin/usage/monthlyreport/"
    # when one is selected
    one = admin_client.post(
        url, {"action": "download_selected", "_selected_action": [reports[0].pk]}
    )
    # then
    assert one.status_code == 200
    assert one["X-Checksum-SHA256"] == reports[0].sha256
    assert one.content == bytes(reports[0].content)
    # when both are selected
    both = admin_client.post(
        url, {"action": "download_selected", "_selected_action": [r.pk for r in reports]}
    )
    archive = zipfile.ZipFile(io.BytesIO(both.content))
    assert sorted(archive.namelist()) == sorted(["SHA256SUMS", *(r.filename for r in reports)])
    assert reports[1].sha256 in archive.read("SHA256SUMS").decode()


def test_stored_report_list_links_each_file(admin_client, october_ledger):
    report = monthly_report_create(year=2026, month=10)[0]
    body = admin_client.get("/admin/usage/monthlyreport/").content.decode()
    assert f"/admin/usage/monthlyreport/{report.pk}/file" in body
    file_response = admin_client.get(f"/admin/usage/monthlyreport/{report.pk}/file")
    assert file_response.content == bytes(report.content)
    assert MonthlyReport.objects.count() == 2


def test_cost_report_refuses_non_staff(member_client, client):
    url = "/admin/usage/usagerecord/cost-report/"
    assert member_client.get(url).status_code == 302
    client.logout()
    assert client.get(url).status_code == 302


def test_ledger_admin_stays_read_only(admin_client, october_ledger):
    row = october_ledger[0]
    response = admin_client.get(f"/admin/usage/usagerecord/{row.pk}/change/")
    assert response.status_code == 200
    assert b'name="_save"' not in response.content
    assert UsageRecord.objects.get(pk=row.pk).cost_usd == row.cost_usd.quantize(
        Decimal("0.0000000001")
    )


def test_cost_report_shows_small_amounts_and_qa_spend_beside_the_bill(admin_client, settings):
    # given a month where a fan cost a fraction of a cent and QA cost more than the bill
    import re
    from datetime import UTC, datetime

    from tests.factories import UsageRecordFactory

    settings.QUALITY_QA_SPEND_WARN_PERCENT = 25
    day = datetime(2026, 10, 5, 12, tzinfo=UTC)
    UsageRecordFactory(created_at=day, end_user="fan-9", cost_usd=Decimal("0.0003120000"))
    UsageRecordFactory(created_at=day, qa=True, cost_usd=Decimal("0.0009"))
    usage_rollup_rebuild(start=OCTOBER[0], end=OCTOBER[1])
    # when
    page = admin_client.get("/admin/usage/usagerecord/cost-report/?month=2026-10").content
    page = page.decode()
    # then the fan's cost reads as the ledger's, not $0.00
    fan = re.search(r'<tr data-line="fan-9">.*?</tr>', page, re.DOTALL).group(0)
    assert 'data-value="0.0003120000">0.0003<' in fan
    # and QA spend stands beside the routed bill: 288.5% of it, over the warning level
    assert re.search(r'data-figure="qa_percent_of_bill" data-value="288.5"', page)
    assert 'data-too-high="true"' in page and "above the 25% warning level" in page
    assert 'id="page-purpose"' in page
