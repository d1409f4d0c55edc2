"""Staff pages and monitoring endpoints: thin, each reads one selector."""

import hmac
from decimal import Decimal

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.html import json_script
from django.views.decorators.http import require_GET

from huntaze.metrics import metrics_render
from huntaze.money import decimal_str
from routing.quality_selectors import quality_panel
from usage.dashboard_selectors import WINDOWS, dashboard_metrics
from usage.reconciliation import reconciliation_alerts


class PlainDecimalEncoder(DjangoJSONEncoder):
    """Decimals as plain strings ("0.0000000000", never "0E-10"): the page rounds them."""

    def default(self, o):
        if isinstance(o, Decimal):
            return decimal_str(o)
        return super().default(o)


def _window(request: HttpRequest) -> str:
    window = request.GET.get("window", "today")
    return window if window in WINDOWS else "today"


@require_GET
@staff_member_required
def dashboard_page(request: HttpRequest) -> HttpResponse:
    window = _window(request)
    return render(
        request,
        "usage/dashboard.html",
        {
            "window": window,
            "windows": WINDOWS,
            "initial_json": json_script(
                dashboard_metrics(window=window, now=timezone.now()),
                "dashboard-initial",
                encoder=PlainDecimalEncoder,
            ),
            "data_url": reverse("usage-dashboard-data"),
            "refresh_ms": settings.DASHBOARD_REFRESH_S * 1000,
            "refresh_s": settings.DASHBOARD_REFRESH_S,
            "quality": quality_panel(now=timezone.now()),
            "reconciliation_alerts": reconciliation_alerts(now=timezone.now()),
            "reconciliation_days": settings.RECONCILE_ALERT_DAYS,
            "reconciliation_tolerance": settings.RECONCILE_TOLERANCE_PERCENT,
        },
    )


@require_GET
@staff_member_required
def dashboard_data(request: HttpRequest) -> JsonResponse:
    metrics = dashboard_metrics(window=_window(request), now=timezone.now())
    return JsonResponse(metrics, encoder=PlainDecimalEncoder)


def _metrics_allowed(request: HttpRequest) -> bool:
    token = settings.METRICS_BEARER_TOKEN
    header = request.headers.get("Authorization", "")
    if token and hmac.compare_digest(header.encode(), f"Bearer {token}".encode()):
        return True
    return request.META.get("REMOTE_ADDR") in settings.METRICS_ALLOWED_IPS


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not _metrics_allowed(request):
        return HttpResponseForbidden("metrics: address not allowed and no valid token\n")
    content, content_type = metrics_render(multiprocess_dir=settings.PROMETHEUS_MULTIPROC_DIR)
    return HttpResponse(content, content_type=content_type)
