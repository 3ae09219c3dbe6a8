"""The file endpoints of the jobs API (mounted at /api/v1/jobs beside `staging.api`'s router): a job's
original photo, its stored outputs and the files made from them.

Stored files are only readable here (by who may see the job, `selectors.visible_jobs`; else the same 404
as for an unknown job) and, for Replicate, through a signed link (docs/operations.md#photos-and-outputs);
the admin's images and the job's JSON link here too, by URL name.
"""

from __future__ import annotations

from typing import Any, Literal

from django.db.models.fields.files import FieldFile
from django.http import FileResponse, HttpRequest
from ninja import Router
from ninja.errors import HttpError

from api.schemas import error_responses

from . import derivatives, media, selectors
from .api import visible_job
from .models import DerivativeKind

router = Router(tags=["jobs"])  # authenticated by the API root (api/root.py), mounted after the jobs router

# Each operation keeps the OpenAPI id it had when these endpoints lived in `staging.api`, so clients
# generated from the document keep their method names.

# The file endpoints answer the file itself; ninja cannot describe a binary body from a return type.
FILE_OPENAPI: dict[str, Any] = {
    "responses": {
        200: {
            "description": "The stored file, streamed (JPEG, PNG or WebP).",
            "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}},
        }
    }
}


def _stream(file: FieldFile) -> FileResponse:
    try:
        return media.file_response(file.name, file.storage)
    except FileNotFoundError:
        raise HttpError(404, "The file is missing from storage.") from None


@router.get(
    "/{int:job_id}/original",
    response=error_responses(404),
    url_name="job-original",
    summary="The job's original photo, as uploaded",
    openapi_extra=FILE_OPENAPI,
    operation_id="staging_api_get_original",
)
def get_original(request: HttpRequest, job_id: int) -> FileResponse:
    return _stream(visible_job(request, job_id).photo)


@router.get(
    "/{int:job_id}/outputs/{int:index}",
    response=error_responses(404, 422),
    url_name="job-output",
    summary="One stored output of the job (its `index` in `outputs`)",
    openapi_extra=FILE_OPENAPI,
    operation_id="staging_api_get_output",
)
def get_output(
    request: HttpRequest,
    job_id: int,
    index: int,
    label: Literal["none", "default"] = "none",
    attempt: int | None = None,
) -> FileResponse:
    """`label=none` (the default): the clean output as Replicate made it; `label=default`: a copy with the
    disclosure label, made from the clean file on first request (docs/architecture.md#disclosure-labels).
    `attempt`: of that attempt rather than of the delivering one (every attempt's outputs stay readable)."""
    visible_job(request, job_id)
    image = selectors.output_of(job_id, index, attempt)
    if label == "default":
        return _stream(derivatives.make_derivative(image, DerivativeKind.LABELLED).file)
    return _stream(image.file)


@router.get(
    "/{int:job_id}/outputs/{int:index}/{kind}",
    response=error_responses(404, 422),
    url_name="job-output-derivative",
    summary="A file made from a stored output (`thumbnail`)",
    openapi_extra=FILE_OPENAPI,
    operation_id="staging_api_get_output_derivative",
)
def get_output_derivative(
    request: HttpRequest, job_id: int, index: int, kind: DerivativeKind, attempt: int | None = None
) -> FileResponse:
    visible_job(request, job_id)
    derivative = derivatives.get_derivative(selectors.output_of(job_id, index, attempt), kind)
    if derivative is None:
        raise HttpError(404, f"Output {index} of job {job_id} has no {kind}.")
    return _stream(derivative.file)
