"""The site's own pages outside `/api/v1/`: the root, and the probes of a load balancer or supervisor.

`/healthz` answers as long as the process serves requests (it touches nothing else, so a database outage
does not get every web worker restarted); `/readyz` says whether this instance can do its work, and
names what is missing (docs/operations.md#health-checks).
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.html import format_html
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from stagingsite import readiness


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@never_cache
@require_safe
def readyz(request: HttpRequest) -> JsonResponse:
    checks = readiness.readiness()
    failing = readiness.failing(checks)
    if failing:
        detail = "not ready: " + "; ".join(f"{name}: {checks[name]}" for name in failing)
        return JsonResponse({"status": "unavailable", "detail": detail, "checks": checks}, status=503)
    return JsonResponse({"status": "ok", "checks": checks})


@require_safe
def root(request: HttpRequest) -> HttpResponse:
    """A short page of links instead of a 404: where people and scripts go from here."""
    links = [
        ("/admin/", "Admin: configure the models, browse and retry jobs"),
        ("/api/v1/docs", "HTTP API: interactive documentation"),
        ("/api/v1/openapi.json", "HTTP API: OpenAPI document"),
        ("/readyz", "Readiness"),
    ]
    items = "".join(format_html('<li><a href="{}">{}</a></li>', href, text) for href, text in links)
    return HttpResponse(
        "<!doctype html><html><head><meta charset='utf-8'><title>Virtual staging</title></head>"
        f"<body><h1>Virtual staging</h1><ul>{items}</ul></body></html>"
    )
