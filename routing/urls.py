from django.urls import path

from routing.apis import CompletionCreateApi, RoutePreviewApi
from routing.batch_apis import BatchJobCreateApi, BatchJobDetailApi

urlpatterns = [
    path("completions", CompletionCreateApi.as_view(), name="completion-create"),
    path("route", RoutePreviewApi.as_view(), name="route-preview"),
    path("batches", BatchJobCreateApi.as_view(), name="batch-create"),
    path("batches/<str:public_id>", BatchJobDetailApi.as_view(), name="batch-detail"),
]
