from django.urls import path

from routing.apis import CompletionCreateApi, RoutePreviewApi

urlpatterns = [
    path("completions", CompletionCreateApi.as_view(), name="completion-create"),
    path("route", RoutePreviewApi.as_view(), name="route-preview"),
]
