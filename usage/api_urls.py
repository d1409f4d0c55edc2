from django.urls import re_path

from usage.apis import MonthlyReportExportApi

urlpatterns = [
    re_path(
        r"^reports/monthly/(?P<month>[0-9-]+)\.(?P<fmt>csv|xlsx)$",
        MonthlyReportExportApi.as_view(),
        name="monthly-report-export",
    ),
]
