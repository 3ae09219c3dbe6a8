"""The API's URL space, included at /api/v1/: ninja's operations, and a JSON 404 for everything else.

The root comes first because ninja registers `""` itself (only to name the root for `reverse`) with a
view that raises Django's HTML 404; the catch-all comes last so that it only sees what nothing matched.
"""

from django.urls import path, re_path

from .root import api
from .views import unknown_path

urlpatterns = [
    path("", unknown_path),
    path("", api.urls),
    re_path(r"^(?P<path>.*)$", unknown_path),
]
