"""REST API of usage: the monthly cost report as a file."""

import re

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


def month_parse(value: str) -> tuple[int, int]:
    """Return (year, month) of a YYYY-MM string, or raise a validation error on `month`."""
    match = MONTH.match(value)
    if not match or not 1 <= int(match[2]) <= 12 or int(match[1]) < 2000:
        raise exceptions.ValidationError({"month": ["Expected a month as YYYY-MM."]})
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
                "month", OpenApiTypes.STR, OpenApiParameter.PATH, description="YYYY-MM"
            ),
            OpenApiParameter("fmt", OpenApiTypes.STR, OpenApiParameter.PATH, enum=["csv", "xlsx"]),
        ],
        responses={
            **{(200, ctype): OpenApiTypes.BINARY for ctype in CONTENT_TYPES.values()},
            **error_responses(400, 401, 403, 404, 503),
        },
    )
    def get(self, request: Request, month: str, fmt: str) -> HttpResponse:
        year, month_number = month_parse(month)
        api_key_id = request.auth.id if isinstance(request.auth, ApiKey) else None
        report = monthly_cost_report(
            year=year, month=month_number, now=timezone.now(), api_key_id=api_key_id
        )
        content, content_type, filename = report_file(report, fmt=fmt)
        return HttpResponse(
            content,
            content_type=content_type,
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )
