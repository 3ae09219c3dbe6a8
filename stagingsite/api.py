"""The project's one HTTP API, served under /api/v1/ (OpenAPI at /api/v1/openapi.json, docs at /api/v1/docs).

Each app contributes a router; the jobs API is mounted here next to the config API.
"""

from ninja import NinjaAPI

from models_config.api import router as models_config_router
from staging.api import router as jobs_router

api = NinjaAPI(urls_namespace="api", title="Virtual staging API", version="1")
api.add_router("/admin/models/", models_config_router)
api.add_router("/jobs", jobs_router)
