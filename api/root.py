"""The project's one HTTP API, served under /api/v1/ (OpenAPI at /api/v1/openapi.json, docs at /api/v1/docs).

Each app contributes a router; what they share (auth, error answers) lives in this app. The docs page
loads Swagger UI from django-ninja's own static files (`ninja` is in INSTALLED_APPS), so it works offline.
"""

from ninja import NinjaAPI

from models_config.api import router as models_config_router
from staging.api import router as jobs_router

from . import errors

api = NinjaAPI(urls_namespace="api", title="Virtual staging API", version="1")
errors.install(api)
api.add_router("/admin/models/", models_config_router)
api.add_router("/jobs", jobs_router)
