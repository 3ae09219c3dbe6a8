"""The API's URL space: docs served from local static files, and JSON 404s for what does not exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
from django.contrib.staticfiles.views import serve
from django.test import Client, RequestFactory

ASSET = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")


def test_the_docs_page_loads_only_local_static_files_and_they_are_served(settings) -> None:
    response = Client().get("/api/v1/docs")
    assert response.status_code == 200
    html = response.content.decode()
    assets = ASSET.findall(html)
    static_url = "/" + settings.STATIC_URL.lstrip("/")
    assert {"ninja/swagger-ui-bundle.js", "ninja/swagger-ui.css"} <= {a.removeprefix(static_url) for a in assets}
    assert all(asset.startswith(static_url) for asset in assets), assets
    assert "cdn" not in html.lower() and "//" not in "".join(assets)

    settings.DEBUG = True  # as under `make run`: runserver serves static files through this view in DEBUG
    for asset in assets:
        path = asset.removeprefix(static_url)
        served = serve(RequestFactory().get(asset), path)
        assert served.status_code == 200, asset
        assert b"".join(served.streaming_content) == Path(finders.find(path)).read_bytes()


def test_the_docs_page_sends_the_csrf_token_for_session_requests(db) -> None:
    html = Client().get("/api/v1/docs").content.decode()
    assert 'data-api-csrf="true"' in html
    assert re.search(r'data-csrf-token="[^"]+"', html)


def test_the_openapi_document_still_knows_where_the_api_lives() -> None:
    document = Client().get("/api/v1/openapi.json").json()
    assert all(path.startswith("/api/v1/") for path in document["paths"])
    assert {"BearerTokenAuth", "SessionAuth"} <= set(document["components"]["securitySchemes"])


@pytest.mark.parametrize("debug", [True, False])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/"),
        ("GET", "/api/v1"),
        ("GET", "/api/v1/nope"),
        ("GET", "/api/v1/jobs/not-a-number"),
        ("GET", "/api/v1/admin/models/qwen-image-edit/nothing/here"),
        ("POST", "/api/v1/nope"),  # JSON too, not Django's CSRF page
        ("DELETE", "/api/v1/jobs/1/nope"),
    ],
)
def test_unknown_api_paths_answer_json_404(settings, debug, method, path) -> None:
    settings.DEBUG = debug
    response = Client(enforce_csrf_checks=True).generic(method, path)
    if path == "/api/v1":  # Django's APPEND_SLASH, as for every URL missing its slash
        assert response.status_code == 301 and response["Location"] == "/api/v1/"
        return
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": f"Not Found: {path}"}


def test_static_files_of_the_docs_are_collected_for_production() -> None:
    assert "ninja" in settings.INSTALLED_APPS
    assert finders.find("ninja/swagger-ui-bundle.js") and finders.find("ninja/swagger-ui-init.js")
