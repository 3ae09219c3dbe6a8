"""Top-level URLs: the admin, the HTTP API and the Replicate webhook."""

from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.urls import include, path

from staging.prometheus import metrics_view
from staging.webhooks import replicate_webhook

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("api.urls")),
    path("webhooks/replicate/", replicate_webhook, name="replicate-webhook"),
    path("metrics", metrics_view, name="metrics"),
]

if settings.DEBUG:
    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
