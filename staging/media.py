"""Serving stored files over HTTP: the signed link Replicate fetches, and the response of every file view.

Nothing under `MEDIA_ROOT` is served anonymously (docs/operations.md#photos-and-outputs). People
reach files through the jobs API's file endpoints, which check their permission; Replicate reaches
the photo through `signed_file`, which checks the token `storage.signed_path` put in the link.
Both stream the file with the same `file_response`.
"""

from __future__ import annotations

import posixpath

from django.core import signing
from django.core.files.storage import Storage, default_storage
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_safe

from . import storage


def file_response(name: str, file_storage: Storage = default_storage) -> FileResponse:
    """The stored file streamed in chunks (never read whole into memory), shown inline with its type.

    Raises `FileNotFoundError` when the storage no longer has it.
    """
    handle = file_storage.open(name, "rb")
    response = FileResponse(handle, content_type=storage.content_type_of(name), filename=posixpath.basename(name))
    response["Cache-Control"] = "private, no-store"  # a shared cache must never keep a private photo
    return response


@require_safe
def signed_file(request: HttpRequest, filename: str) -> HttpResponse:
    """The file a valid, unexpired `sig` token names; 403 for a tampered or expired one, 404 when gone."""
    token = request.GET.get(storage.SIGNATURE_PARAM, "")
    try:
        name = storage.signed_name(token, filename)
    except signing.SignatureExpired:
        return JsonResponse({"detail": "This link has expired."}, status=403)
    except signing.BadSignature:
        return JsonResponse({"detail": "This link is not valid."}, status=403)
    try:
        return file_response(name)
    except FileNotFoundError:
        return JsonResponse({"detail": "The file no longer exists."}, status=404)
