"""Loading the settings at a process's start, with a one-line reason instead of a traceback.

A missing `DJANGO_SECRET_KEY` with debug off (the default) or a bad pool size is an operator's mistake,
not a bug: `manage.py` and the app server's master (`gunicorn.conf.py`) both stop with the settings'
own message, which says what to set (docs/operations.md#production-settings).
"""

from __future__ import annotations

import os

from django.core.exceptions import ImproperlyConfigured


def load_settings_or_exit() -> None:
    """Import the settings now; exit with status 1 and `error: <reason>` when they refuse to load."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stagingsite.settings")
    from django.conf import settings

    try:
        settings.INSTALLED_APPS  # noqa: B018 (the access is what loads them)
    except ImproperlyConfigured as exc:
        raise SystemExit(f"error: {exc}") from None
