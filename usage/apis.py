"""REST API of usage: the monthly cost report as a file."""

import re
from datetime import datetime

from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, permissions
from rest_framework.authentication import SessionAuthentication
from rest_framework.request import Request
from rest_framework.views import APIView

from routing.auth import ApiKeyAuthentication
from routing.models import ApiKey
from routing.schema import error_responses
from usage.exports import CONTENT_TYPES, report_file
from usage.selectors import monthly_cost_report

MONTH = re.compile(r"^(\d{4})-(\d{2})$")
FIRST_YEAR = 2000
# What the schema promises; the server also refuses years after next year.
MONTH_PATTERN = r"^20[0-9]{2}-(0[1-9]|1[0-2])$"


def month_parse(value: str, *, now: datetime | None = None) -> tuple[int, int]:
    """Return (year, month) of a YYYY-MM string from 2000-01 to December of next year, or raise
    a validation error on `month` (a month that far off is a typo, and year 9999 has no next
    month to end its range)."""
    last_year = (now or timezone.now()).year + 1
    match = MONTH.match(value)
    if not match or not 1 <= int(match[2]) <= 12 or not FIRST_YEAR <= int(match[1]) <= last_year:
        message = f"Expected a month as YYYY-MM, from {FIRST_YEAR}-01 to {last_year}-12."
        raise exceptions.ValidationError({"month": [message]})
    return int(match[1]), int(match[2])


class IsApiKeyOrStaff(permissions.BasePermission):
    """An API key (sees only its own traffic) or a staff user's session (sees all)."""

    def has_permission(self, request: Request, view) -> bool:
        if isinstance(request.auth, ApiKey):
            return True
        return bool(getattr(request.user, "is_staff", False))


class MonthlyReportExportApi(APIView):
    authentication_classes = [ApiKeyAuthentication, SessionAuthentication]
    permission_classes = [IsApiKeyOrStaff]

    @extend_schema(
        operation_id="monthly_report_export",
        summary="The monthly cost report as CSV or XLSX (an API key sees its own traffic).",
        parameters=[
            OpenApiParameter(
                "month",
                OpenApiTypes.STR,
                OpenApiParameter.PATH,
                description=f"YYYY-MM, from {FIRST_YEAR}-01 to December of next year",
                pattern=MONTH_PATTERN,
            ),
            OpenApiParameter("fmt", OpenApiTypes.STR, OpenApiParameter.PATH, enum=["csv", "xlsx"]),
        ],
        responses={
            **{(200, ctype): OpenApiTypes.BINARY for ctype in CONTENT_TYPES.values()},
            **error_responses(400, 401, 403, 404, 503),
        },
    )
    def get(self, request: Request, month: str, fmt: str) -> HttpResponse:
        now = timezone.now()
        year, month_number = month_parse(month, now=now)
        api_key_id = request.auth.id if isinstance(request.auth, ApiKey) else None
        report = monthly_cost_report(year=year, month=month_number, now=now, api_key_id=api_key_id)
        content, content_type, filename = report_file(report, fmt=fmt)
        return HttpResponse(
            content,
            content_type=content_type,
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )
