"""The project's URLs, as they are: the emulator fetches photos through the signed `/files/` links.

Kept as the webhook and cluster tests' URLconf (tests/staging/conftest.py); it serves no `/media/`,
so those tests prove that the signed links are what Replicate uses.
"""

from stagingsite.urls import urlpatterns as project_urlpatterns

urlpatterns = [*project_urlpatterns]
