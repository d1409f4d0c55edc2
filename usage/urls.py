from django.urls import path

from usage.views import dashboard_data, dashboard_page, metrics

urlpatterns = [
    path("dashboard/", dashboard_page, name="usage-dashboard"),
    path("dashboard/data.json", dashboard_data, name="usage-dashboard-data"),
    path("metrics", metrics, name="metrics"),
]
