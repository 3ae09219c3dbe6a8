"""Top-level URLs: the admin, the HTTP API, the Replicate webhook, the signed links to photos, the health
probes, the Prometheus metrics and the root page.

Stored files are never served from `MEDIA_URL`, not even in debug: people get them through the
jobs API (permission checked), Replicate through a signed link (docs/operations.md#photos-and-outputs).
"""

from django.contrib import admin
from django.urls import include, path

from api.throttling import throttle_failed_logins
from staging.media import signed_file
from staging.prometheus import metrics_view
from staging.webhooks import replicate_webhook
from stagingsite import views

urlpatterns = [
    path("", views.root, name="root"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    # Failed logins are limited per address (docs/architecture.md#rate-limits): the admin's login, wrapped.
    path("admin/login/", throttle_failed_logins(admin.site.login)),
    path("admin/", admin.site.urls),
    path("api/v1/", include("api.urls")),
    path("webhooks/replicate/", replicate_webhook, name="replicate-webhook"),
    path("metrics", metrics_view, name="metrics"),
    path("files/<str:filename>", signed_file, name="signed-file"),
]
