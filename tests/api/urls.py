"""A probe API for the auth tests: one operation guarded by `api_auth` and `require_perm`, nothing else.

Mounted next to the project's URLs (the admin sets the CSRF cookie), so the whole middleware stack runs.
"""

from django.http import HttpRequest
from django.urls import path
from ninja import NinjaAPI, Router

from api.auth import api_auth, require_perm
from stagingsite.urls import urlpatterns as project_urlpatterns

PERMS = ("models_config.view_modelconfig", "models_config.change_modelconfig")

router = Router(auth=api_auth())


@router.api_operation(["GET", "POST"], "/whoami")
def whoami(request: HttpRequest) -> dict[str, str]:
    user = require_perm(request, *PERMS)
    return {"user": user.get_username(), "request_user": request.user.get_username()}


probe = NinjaAPI(urls_namespace="probe", title="probe", version="test")
probe.add_router("/", router)

urlpatterns = [path("probe/", probe.urls), *project_urlpatterns]
