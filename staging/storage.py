"""Getting the job's photo to Replicate: a signed link our service serves, or an upload to the Files API.

Stored files are never readable anonymously (docs/operations.md#photos-and-outputs). With
`STAGING_PUBLIC_URL` set the service is reachable from the internet, so Replicate gets a link that
needs no login: the storage's own absolute URL when it makes one (S3 or GCS presigned URLs, used as
they are), else a link to `media.signed_file` whose `sig` parameter is a `django.core.signing` token
naming the stored file, valid for `STAGING_SIGNED_URL_SECONDS`. Without a public URL Replicate
cannot reach us, so the photo goes through the Files API.
"""

from __future__ import annotations

import io
import logging
import posixpath
import re
from urllib.parse import urlencode

from django.conf import settings
from django.core import signing
from django.db.models.fields.files import FieldFile
from django.urls import reverse

from . import gateway

logger = logging.getLogger(__name__)

SIGNATURE_PARAM = "sig"  # the query parameter carrying the token (query strings stay out of access logs)
_SALT = "staging.storage.signed-file"  # a token made for anything else never opens a file


def public_url(file: FieldFile) -> str:
    """A link to the stored file that Replicate can fetch without logging in, for a limited time."""
    url = file.url
    if url.startswith(("http://", "https://")):
        return url  # the storage signs its own URLs (or serves them publicly by its owner's choice)
    return f"{settings.STAGING_PUBLIC_URL}{signed_path(file.name)}"


def signed_path(name: str) -> str:
    """The service's path to the stored file `name`, with a token that proves we issued it, and when."""
    token = signing.TimestampSigner(salt=_SALT).sign_object(name)
    filename = posixpath.basename(name)
    return f"{reverse('signed-file', kwargs={'filename': filename})}?{urlencode({SIGNATURE_PARAM: token})}"


def signed_name(token: str, filename: str) -> str:
    """The stored file a token from `signed_path` names.

    Raises `signing.SignatureExpired` after `STAGING_SIGNED_URL_SECONDS`, `signing.BadSignature` for
    a token we did not issue (or one for another file name).
    """
    name = signing.TimestampSigner(salt=_SALT).unsign_object(token, max_age=settings.STAGING_SIGNED_URL_SECONDS)
    if not isinstance(name, str) or posixpath.basename(name) != filename:
        raise signing.BadSignature("The token names another file.")
    return name


# Ours, and the storages' own presigned links (S3: X-Amz-…, GCS: X-Goog-…; the security token is a credential).
_SIGNATURE_VALUE = re.compile(
    rf"(?i)(?<=[?&])({SIGNATURE_PARAM}|signature|x-amz-signature|x-amz-security-token|x-goog-signature)=[^&#\s'\"]+"
)


def redact_signatures(text: str) -> str:
    """`text` (a log line, a recorded input shown in the admin) with every signed link's signature blanked."""
    return _SIGNATURE_VALUE.sub(r"\1=[redacted]", text)


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
