import pytest
from django.contrib import admin

from routing.models import BudgetPeriod
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_request(rf, admin_user):
    request = rf.get("/admin/")
    request.user = admin_user
    return request


def test_the_ledger_admin_adds_changes_and_deletes_nothing(staff_request):
    ledger = admin.site._registry[UsageRecord]
    assert not ledger.has_add_permission(staff_request)
    assert not ledger.has_change_permission(staff_request)
    assert not ledger.has_delete_permission(staff_request)


def test_a_read_only_admin_that_is_deletable_keeps_only_the_delete(staff_request):
    periods = admin.site._registry[BudgetPeriod]
    assert not periods.has_add_permission(staff_request)
    assert not periods.has_change_permission(staff_request)
    assert periods.has_delete_permission(staff_request)
