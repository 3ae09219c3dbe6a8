"""The project's URLs plus media serving, so the emulator can fetch photos from the live test server."""

from django.conf import settings
from django.urls import re_path
from django.views.static import serve

from stagingsite.urls import urlpatterns as project_urlpatterns

urlpatterns = [
    *project_urlpatterns,
    re_path(r"^media/(?P<path>.*)$", serve, {"document_root": settings.MEDIA_ROOT}),
]
