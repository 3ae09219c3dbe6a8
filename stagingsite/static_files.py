"""Whether `collectstatic` has to run before the app server starts with debug off.

With debug off WhiteNoise serves only what `collectstatic` wrote to STATIC_ROOT, under hashed names
from its manifest; a missing or stale manifest means an unstyled admin, or a 500 on a page naming a
file the manifest lacks. `serve` collects when the manifest is missing or older than a source file
(a fresh clone, an upgraded package), and skips the ten-second job otherwise.
"""

from __future__ import annotations

from pathlib import Path

from django.apps import apps
from django.contrib.staticfiles import finders
from django.contrib.staticfiles.storage import staticfiles_storage
from django.core.management import call_command


def manifest_path() -> Path | None:
    """The manifest `collectstatic` writes; None when the storage keeps none."""
    name = getattr(staticfiles_storage, "manifest_name", None)
    return Path(staticfiles_storage.path(name)) if name else None


def collected_is_current() -> bool:
    manifest = manifest_path()
    if manifest is None:
        return True  # nothing is looked up by hashed name: files are found as they are
    try:
        collected_at = manifest.stat().st_mtime
    except FileNotFoundError:
        return False
    ignore = apps.get_app_config("staticfiles").ignore_patterns
    for finder in finders.get_finders():
        for path, storage in finder.list(ignore):
            if Path(storage.path(path)).stat().st_mtime > collected_at:
                return False
    return True


def collect_if_stale() -> bool:
    """Run `collectstatic` when the collected files are missing or stale; True when it ran."""
    if collected_is_current():
        return False
    call_command("collectstatic", interactive=False, verbosity=0)
    return True
