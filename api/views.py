"""Plain Django views of the API's URL space (the operations themselves are ninja's)."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt


@csrf_exempt  # a 404 whatever the method: never Django's CSRF page for a POST to a wrong URL
def unknown_path(request: HttpRequest, path: str = "") -> JsonResponse:
    """JSON 404 for `/api/v1/` and every path no operation serves, in DEBUG and not.

    Without it Django answers those with its HTML (in DEBUG, its technical) 404 page.
    """
    return JsonResponse({"detail": f"Not Found: {request.path}"}, status=404)
