"""Getting the job's photo to Replicate: a URL our storage serves, or an upload to the Files API.

With `STAGING_PUBLIC_URL` set the service is reachable from the internet, so the storage URL works
(absolute URLs, e.g. S3 signed URLs, are used as they are; relative ones are joined to the public
base). Without it Replicate cannot reach us, so the photo goes through the Files API.
"""

from __future__ import annotations

import io
import logging

from django.conf import settings
from django.db.models.fields.files import FieldFile

from . import gateway

logger = logging.getLogger(__name__)


def public_url(file: FieldFile) -> str:
    url = file.url
    if url.startswith(("http://", "https://")):
        return url
    return f"{settings.STAGING_PUBLIC_URL}{url if url.startswith('/') else '/' + url}"


def image_url_for_replicate(file: FieldFile, content_type: str) -> str:
    """The URL to put in the model input for this stored photo."""
    if settings.STAGING_PUBLIC_URL:
        return public_url(file)
    name = file.name.rsplit("/", 1)[-1]
    with file.open("rb") as handle:
        data = handle.read()
    return gateway.upload_file(io.BytesIO(data), filename=name, content_type=content_type)


CONTENT_TYPES = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}


def content_type_of(name: str) -> str:
    return CONTENT_TYPES.get(name.rsplit(".", 1)[-1].lower(), "application/octet-stream")


def delete_files(*files: FieldFile) -> None:
    """Delete each stored file (empty fields are skipped): the one way files leave storage.

    Used by clean-ups after a failure, so it never raises: a clean-up must not hide the error that
    caused it, and a file that cannot be deleted must not keep the others. Failures are logged.
    """
    for file in files:
        if not file:
            continue
        try:
            file.storage.delete(file.name)
        except Exception:
            logger.exception("Could not delete stored file %s", file.name)
