"""The settings of a test run: the service's own, in development mode, which the tests turn on explicitly.

With nothing set the service runs in production mode (debug off, a secret key required). Tests set
`DJANGO_DEBUG=true` in the environment before the settings load, so that every child process a test
starts (`manage.py serve`, `qcluster`) inherits it too; the tests of production mode set their own.
"""

import os

os.environ["DJANGO_DEBUG"] = "true"

from stagingsite.settings import *  # noqa: F403

# Django's test runner turns DEBUG off, and the manifest storage then wants `collectstatic`'s manifest for
# every `{% static %}`: tests render templates from the source files instead, as development does.
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}  # noqa: F405
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True

# Rate-limit counts start empty in every test: the API's throttles count in this process's memory here
# (tests/conftest.py clears it), not in the database cache, whose table outlives a test. That table is
# still created by `migrate` (the "database" alias), for child processes (serve, qcluster) and for the
# tests of the shared cache (tests/api/test_rate_limits.py), which switch "default" to it.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "database": DATABASE_CACHE,  # noqa: F405
}
