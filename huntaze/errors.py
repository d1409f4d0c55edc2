"""Django's last-resort error pages: JSON for API paths, the usual HTML elsewhere."""

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults

API_PREFIXES = ("/api/", "/v1/")


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIXES)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        body = {"error": {"code": "not_found", "message": "Not found.", "field": None}}
        return JsonResponse(body, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        body = {"error": {"code": "internal_error", "message": "Internal error.", "field": None}}
        return JsonResponse(body, status=500)
    return defaults.server_error(request)
