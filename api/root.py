"""The project's one HTTP API, served under /api/v1/ (OpenAPI at /api/v1/openapi.json, docs at /api/v1/docs).

Each app contributes a router; what they share lives in this app and is set here, once, for all of
them: authentication (a personal token or the staff session, `auth.api_auth`), the token scope area of
each router (where it is mounted below; a router mounted without one needs a token with every scope),
the per-token rate limit (`throttling.ApiRateThrottle`, STAGING_API_RATE) and the answers to domain
errors (`errors`). Operations still check their own permissions with `auth.require_perm`.
The docs page loads Swagger UI from django-ninja's own static files (`ninja` is in INSTALLED_APPS),
so it works offline, and sends the CSRF token so that a logged-in admin can try requests from it.
"""

from typing import Any

from ninja import NinjaAPI

from models_config.api import router as models_config_router
from staging.api import router as jobs_router
from staging.files_api import router as job_files_router
from staging.listings_api import router as listings_router
from staging.metrics_api import router as metrics_router
from staging.spend_api import router as spend_router

from . import errors
from .auth import UNSCOPED, api_auth
from .schemas import describe_errors_in
from .throttling import ApiRateThrottle
from .tokens_api import router as tokens_router


class StagingAPI(NinjaAPI):
    """Ninja's root, whose OpenAPI document says what each error status means (`schemas.ERROR_DESCRIPTIONS`)."""

    def get_openapi_schema(self, *args: Any, **kwargs: Any) -> Any:
        return describe_errors_in(super().get_openapi_schema(*args, **kwargs))


api = StagingAPI(
    urls_namespace="api", title="Virtual staging API", version="1", auth=api_auth(), throttle=[ApiRateThrottle()]
)
errors.install(api)
api.add_router("/admin/models/", models_config_router, auth=api_auth("config"))
api.add_router("/admin/models/", metrics_router, auth=api_auth("config"))
api.add_router("/admin/spend", spend_router, auth=api_auth("config"))
api.add_router("/jobs", jobs_router, auth=api_auth("jobs"))
# After the jobs router: `/{id}/outputs/{n}/choose` must be matched before `/{id}/outputs/{n}/{kind}`.
api.add_router("/jobs", job_files_router, auth=api_auth("jobs"))
api.add_router("/listings", listings_router, auth=api_auth("jobs"))
api.add_router("/tokens", tokens_router, auth=api_auth(UNSCOPED))
