"""The project's URLs plus one view that fails, for the error-tracking tests (tests/stagingsite/test_sentry.py)."""

from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from stagingsite.urls import urlpatterns as project_urlpatterns


@csrf_exempt  # a webhook-like POST
def failing_view(request: HttpRequest) -> HttpResponse:
    token = request.GET.get("attempt", "")  # a local holding a credential: it must not reach an event
    raise RuntimeError(f"the view failed ({len(token)} characters of token)")


urlpatterns = [path("fail/", failing_view), *project_urlpatterns]
