"""Reconciliation where people see it: the admin lists and upload, the dashboard's red alert,
the Prometheus gauge and the commands."""

from datetime import date, timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.utils import timezone

from usage.models import ProviderUsage, Reconciliation, ReconciliationStatus

pytestmark = pytest.mark.django_db

CSV_HEADER = "day,model,requests,input_tokens,cached_tokens,output_tokens,cost_usd\n"


def _reconciliation(day: date, model: str, status: str, percent: str = "0") -> Reconciliation:
    figures = {
        f"{side}_{name}": 100
        for side in ("ledger", "provider")
        for name in ("requests", "input_tokens", "cached_tokens", "cache_write_tokens")
        + ("output_tokens",)
    }
    differences = {
        f"{name}_difference": 0
        for name in ("requests", "input_tokens", "cached_tokens", "cache_write_tokens")
        + ("output_tokens",)
    }
    return Reconciliation.objects.create(
        day=day,
        model=model,
        status=status,
        **figures,
        **differences,
        ledger_cost_usd=Decimal("1.00"),
        provider_cost_usd=Decimal("1.02"),
        cost_difference_usd=Decimal("0.02"),
        max_difference_percent=Decimal(percent),
        differing="cost_usd" if status == ReconciliationStatus.MISMATCH else "",
        reconciled_at=timezone.now(),
    )


@pytest.fixture
def ops_client(client):
    """A staff user allowed to see the reconciliation and provider figures, and import bills."""
    user = get_user_model().objects.create_user("ops", "ops@example.com", "pw", is_staff=True)
    codenames = ["view_reconciliation", "view_providerusage"]
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client.force_login(user)
    return client


def test_admin_lists_each_days_difference_with_filters(ops_client):
    # given
    yesterday = timezone.now().date() - timedelta(days=1)
    _reconciliation(yesterday, "gpt-4o-mini", ReconciliationStatus.MISMATCH, "2.0000")
    _reconciliation(yesterday, "gpt-4o", ReconciliationStatus.OK)
    url = "/admin/usage/reconciliation/"
    # when
    everything = ops_client.get(url)
    mismatches = ops_client.get(url, {"status__exact": "mismatch"})
    # then
    assert everything.status_code == 200
    assert b"gpt-4o-mini" in everything.content and b"mismatch (over the tolerance)" in (
        everything.content
    )
    assert mismatches.status_code == 200
    assert list(mismatches.context["cl"].result_list.values_list("model", flat=True)) == [
        "gpt-4o-mini"
    ]
    assert b"Import a provider" in everything.content


def test_admin_import_shows_bad_rows_and_imports_nothing(admin_client):
    # given
    content = CSV_HEADER + "2026-11-05,m,1,10,0,1,0.1\n2026-11-32,m,1,10,0,1,0.1\n"
    upload = SimpleUploadedFile("bill.csv", content.encode(), content_type="text/csv")
    # when
    response = admin_client.post("/admin/usage/providerusage/import/", {"file": upload})
    # then
    assert response.status_code == 200
    assert b"Nothing was imported" in response.content
    assert b"row 3: day" in response.content
    assert not ProviderUsage.objects.exists()


def test_admin_import_of_a_good_file_reconciles_and_lands_on_the_list(admin_client):
    # given
    upload = SimpleUploadedFile("bill.csv", (CSV_HEADER + "2026-11-05,m,1,10,0,1,0.1\n").encode())
    # when
    response = admin_client.post("/admin/usage/providerusage/import/", {"file": upload})
    # then
    assert response.status_code == 302
    assert response["Location"] == "/admin/usage/reconciliation/"
    assert Reconciliation.objects.get().status == ReconciliationStatus.MISSING_LEDGER


def test_dashboard_shows_a_red_alert_for_a_mismatch(staff_client):
    # given
    yesterday = timezone.now().date() - timedelta(days=1)
    _reconciliation(yesterday, "gpt-4o-mini", ReconciliationStatus.MISMATCH, "2.0000")
    # when
    response = staff_client.get("/dashboard/")
    # then
    html = " ".join(response.content.decode().split())
    assert 'class="errornote reconciliation-alert"' in html
    assert "gpt-4o-mini: mismatch (over the tolerance) (cost_usd; largest difference 2%)" in html


def test_dashboard_has_no_alert_when_the_bill_matches(staff_client):
    # given
    _reconciliation(timezone.now().date() - timedelta(days=1), "gpt-4o", "ok")
    _reconciliation(timezone.now().date() - timedelta(days=30), "gpt-4o", "missing_provider")
    # when
    response = staff_client.get("/dashboard/")
    # then
    assert b"reconciliation-alert" not in response.content


def test_gauge_counts_alerting_days_per_status(client):
    # given
    yesterday = timezone.now().date() - timedelta(days=1)
    _reconciliation(yesterday, "gpt-4o-mini", ReconciliationStatus.MISMATCH, "2")
    _reconciliation(yesterday, "gpt-4o", ReconciliationStatus.MISSING_PROVIDER)
    # when
    text = client.get("/metrics").content.decode()
    # then
    assert 'huntaze_reconciliation_mismatches{status="mismatch"} 1.0' in text
    assert 'huntaze_reconciliation_mismatches{status="missing_provider"} 1.0' in text
    assert 'huntaze_reconciliation_mismatches{status="missing_ledger"} 0.0' in text


def test_import_command_reports_bad_rows(tmp_path):
    # given
    path = tmp_path / "bill.csv"
    path.write_text(CSV_HEADER + "2026-11-05,m,one,10,0,1,0.1\n")
    # when
    with pytest.raises(CommandError) as error:
        call_command("import_provider_usage", str(path))
    # then
    assert "row 2: requests 'one' is not a whole number >= 0" in str(error.value)
    assert not ProviderUsage.objects.exists()


def test_import_command_then_reconcile_command_without_fetch(tmp_path, settings):
    # given
    settings.PROVIDER_USAGE_BASE_URL = ""
    path = tmp_path / "bill.csv"
    path.write_text(CSV_HEADER + "2026-11-05,m,1,10,0,1,0.1\n")
    out = StringIO()
    # when
    call_command("import_provider_usage", str(path), stdout=out)
    call_command(
        "reconcile_provider_usage", "--start", "2026-11-01", "--end", "2026-11-07",
        "--no-fetch", stdout=out,
    )  # fmt: skip
    # then
    assert "imported 1 row(s), 2026-11-05 to 2026-11-05" in out.getvalue()
    assert "reconciled 1 day/model(s), 1 differ" in out.getvalue()


def test_reconcile_command_needs_an_export_to_fetch(settings):
    settings.PROVIDER_USAGE_BASE_URL = ""
    with pytest.raises(CommandError, match="No provider export configured"):
        call_command("reconcile_provider_usage", "--start", "2026-11-01")
