"""The staff dashboard's quality panel: figures per category and band, and the alert."""

import pytest
from django.contrib.auth import get_user_model

from tests.routing.test_calibration import _evaluations

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw-for-tests")
    client.force_login(user)
    return client


def test_dashboard_shows_quality_retained_with_interval_and_alert(staff_client, policy, settings):
    # given marketing under its 95% floor with enough evaluations, chatbot above it
    settings.QUALITY_MIN_SAMPLES = 10
    _evaluations("marketing", 5.0, good=8, bad=2)
    _evaluations("chatbot", 2.0, good=10, bad=0)
    # when
    page = staff_client.get("/dashboard/").content.decode()
    # then
    assert 'id="quality-panel"' in page
    assert "Quality alert: <strong>marketing</strong>" in page
    assert "80.0%" in page and "49.0-94.3%" in page
    assert 'data-category="chatbot"' in page and "72.2-100.0%" in page
    assert "below floor" in page


def test_dashboard_explains_how_to_switch_shadowing_on_without_evaluations(staff_client, policy):
    page = staff_client.get("/dashboard/").content.decode()
    assert "No evaluations yet" in page and "quality_sampling" in page
