"""Top-level URLs: the admin, the HTTP API, the Replicate webhook, the signed links to photos, the health
probes, the Prometheus metrics and the root page.

Stored files are never served from `MEDIA_URL`, not even in debug: people get them through the
jobs API (permission checked), Replicate through a signed link (docs/operations.md#photos-and-outputs).
"""

from django.contrib import admin
from django.urls import include, path

from api.throttling import throttle_failed_logins
from staging.admin_playground import playground_result_view, playground_view
from staging.media import signed_file
from staging.prometheus import metrics_view
from staging.webhooks import replicate_webhook
from stagingsite import views

# The admin is the staff's workbench: branded as the service, not as "Django administration".
admin.site.site_header = "Virtual Staging"
admin.site.site_title = "Virtual Staging"
admin.site.index_title = "Workbench"

urlpatterns = [
    path("", views.root, name="root"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    # Failed logins are limited per address (docs/architecture.md#rate-limits): the admin's login, wrapped.
    path("admin/login/", throttle_failed_logins(admin.site.login)),
    # The playground sits under the admin (staff only) but lives in staging (docs/architecture.md#the-playground).
    path("admin/playground/<slug:slug>/", admin.site.admin_view(playground_view), name="staging-playground"),
    path(
        "admin/playground/tries/<int:job_id>/",
        admin.site.admin_view(playground_result_view),
        name="staging-playground-result",
    ),
    path("admin/", admin.site.urls),
    path("api/v1/", include("api.urls")),
    path("webhooks/replicate/", replicate_webhook, name="replicate-webhook"),
    path("metrics", metrics_view, name="metrics"),
    path("files/<str:filename>", signed_file, name="signed-file"),
]
