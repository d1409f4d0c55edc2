from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("routing.urls")),
    path("api/v1/", include("usage.api_urls")),
    path("", include("usage.urls")),
    path("v1/", include("routing.openai_urls")),
    path("api/v1/schema", SpectacularAPIView.as_view(authentication_classes=[]), name="schema"),
]
