"""The jobs API (mounted at /api/v1/jobs): create a staging job, follow it, reprocess it, read its files.

Handlers are thin: they parse and check the request, fetch a photo URL through `fetch` (the SSRF
defences live there), and call `services` / `selectors`. What those raise is answered by `api.errors`
in the config API's shapes: 422 `{"detail": [{"loc": ["body", field, ...], "msg", "type"}]}` with
nothing stored, `{"detail": str}` otherwise. Same authentication as the config API (personal token or
staff session with CSRF).

`POST /jobs` takes two bodies, so it parses the request itself instead of declaring ninja
parameters (ninja cannot bind one operation to both a multipart form and a JSON body); the OpenAPI
document still describes both (`schemas.CREATE_JOB_OPENAPI`).
"""

from __future__ import annotations

import io
import json
from typing import Any, Literal

from django.core.files.uploadedfile import UploadedFile
from django.db.models.fields.files import FieldFile
from django.http import FileResponse, HttpRequest
from django.urls import reverse
from ninja import Router, Status
from ninja.errors import HttpError
from pydantic import ValidationError

from api.auth import require_perm
from api.errors import field_error, invalid
from api.schemas import WITH_BODY, error_responses
from models_config.schemas import field_errors

from . import derivatives, fetch, gateway, media, selectors, services
from .models import Attempt, DerivativeKind, StagedImage, StagingJob
from .schemas import (
    CREATE_JOB_OPENAPI,
    REPROCESS_OPENAPI,
    AttemptOut,
    JobFieldsIn,
    JobJsonIn,
    JobOut,
    ReprocessIn,
)

ADD_PERM = "staging.add_stagingjob"
VIEW_PERMS = ("staging.view_stagingjob", "staging.change_stagingjob")
CHANGE_PERM = "staging.change_stagingjob"

router = Router(tags=["jobs"])  # authenticated by the API root (api/root.py)

# The file endpoints answer the file itself; ninja cannot describe a binary body from a return type.
FILE_OPENAPI: dict[str, Any] = {
    "responses": {
        200: {
            "description": "The stored file, streamed (JPEG, PNG or WebP).",
            "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}},
        }
    }
}


# --- request parsing ----------------------------------------------------------------------------


def _loads(raw: str | bytes) -> Any:
    """`json.loads`; JSON nested too deeply for the parser (it raises RecursionError) is invalid JSON too."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _parse_multipart(request: HttpRequest) -> tuple[JobFieldsIn, UploadedFile]:
    """Form fields + the `image` file. Empty form fields count as not given (HTML forms send them)."""
    data: dict[str, Any] = {key: value for key, value in request.POST.items() if value != ""}
    errors: list[dict[str, Any]] = []
    if "config" in data:
        try:
            data["config"] = _loads(data["config"])
        except ValueError:
            del data["config"]  # reported once, here, not again as "not a dict"
            errors.append(field_error(["body", "config"], "Not valid JSON: send the config override as a JSON object."))
    image = request.FILES.get("image")
    if image is None:
        errors.append(field_error(["body", "image"], "Attach the photo as the `image` file field.", "missing"))
    if "image_url" in data:
        errors.append(field_error(["body", "image_url"], "Send either an image file or (in a JSON body) an image_url."))
    try:
        fields = JobFieldsIn.model_validate({k: v for k, v in data.items() if k != "image_url"})
    except ValidationError as exc:
        errors = field_errors(exc, ("body",)) + errors
    if errors:
        raise invalid(*errors)
    return fields, image


def _parse_json(request: HttpRequest) -> JobJsonIn:
    try:
        data = _loads(request.body or b"null")
    except ValueError:
        raise invalid(field_error(["body"], "The body is not valid JSON.", "json_invalid")) from None
    if not isinstance(data, dict):
        raise invalid(field_error(["body"], "The body must be a JSON object.", "model_attributes_type"))
    try:
        return JobJsonIn.model_validate(data)
    except ValidationError as exc:
        raise invalid(*field_errors(exc, ("body",))) from None


def _parse_reprocess(request: HttpRequest) -> ReprocessIn:
    """The optional JSON body; an empty body or an empty form (what bare POST clients send) means none."""
    content_type = (request.content_type or "").lower()
    if content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        if not request.POST and not request.FILES:
            return ReprocessIn()
        raise invalid(field_error(["body"], 'Send the optional config override as JSON: {"config": {...}}.'))
    if not request.body.strip():
        return ReprocessIn()
    try:
        data = _loads(request.body)
    except ValueError:
        raise invalid(field_error(["body"], "The body is not valid JSON.", "json_invalid")) from None
    try:
        return ReprocessIn.model_validate(data)
    except ValidationError as exc:
        raise invalid(*field_errors(exc, ("body",))) from None


# --- response building --------------------------------------------------------------------------


def _url(request: HttpRequest, name: str, **kwargs: Any) -> str:
    """The absolute URL of one of the file endpoints below: files are only ever linked through them."""
    return request.build_absolute_uri(reverse(f"api:{name}", kwargs=kwargs))


def _attempt_out(attempt: Attempt) -> dict[str, Any]:
    return {
        "number": attempt.number,
        "state": attempt.state,
        "error": attempt.error,
        "error_class": attempt.error_class,
        "config_version": attempt.config_version.number if attempt.config_version_id else None,
        "config_source": attempt.config_source,
        "arm": attempt.arm,
        "prediction_id": attempt.prediction_id,
        "predict_time": attempt.predict_time,
        "cost": float(attempt.cost) if attempt.cost is not None else None,
        "created_at": attempt.created_at,
        "submitted_at": attempt.submitted_at,
        "finished_at": attempt.finished_at,
    }


def _job_out(request: HttpRequest, job_id: int) -> dict[str, Any]:
    """The job read fresh (status derived in SQL), with its attempts and stored outputs."""
    job = selectors.get_job(job_id)
    attempts = job.attempts.select_related("config_version").order_by("number")
    return {
        "id": job.pk,
        "uid": job.uid,
        "status": job.derived_status,
        "model": job.model_slug,
        "room_type": job.room_type,
        "style": job.style,
        "instructions": job.instructions,
        "seed": job.seed,
        "config_override": job.config_override,
        "photo": {
            "url": _url(request, "job-original", job_id=job.pk),
            "width": job.photo_width,
            "height": job.photo_height,
        },
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "attempts": [_attempt_out(attempt) for attempt in attempts],
        "outputs": [_output_out(request, image) for image in selectors.outputs_of(job)],
    }


def _output_out(request: HttpRequest, image: StagedImage) -> dict[str, Any]:
    made = derivatives.by_kind(image)
    where = {"job_id": image.attempt.job_id, "index": image.index}
    links = {kind: _url(request, "job-output-derivative", kind=kind, **where) for kind in made}
    return {
        "index": image.index,
        "url": _url(request, "job-output", **where),
        "thumbnail_url": links.get(DerivativeKind.THUMBNAIL),
        "derivatives": links,
        "content_type": image.content_type,
        "width": image.width,
        "height": image.height,
        "size": image.size,
        "checksum": image.checksum,
    }


def _existing(job_id: int) -> None:
    if not StagingJob.objects.filter(pk=job_id).exists():
        raise HttpError(404, f"No job {job_id}.")


def _output(job_id: int, index: int) -> StagedImage:
    """The job's stored output `index` (of its latest succeeded attempt, as listed in the job's `outputs`)."""
    job = StagingJob.objects.filter(pk=job_id).first()
    if job is None:
        raise HttpError(404, f"No job {job_id}.")
    image = selectors.outputs_of(job).filter(index=index).first()
    if image is None:
        raise HttpError(404, f"Job {job_id} has no stored output {index}.")
    return image


def _stream(file: FieldFile) -> FileResponse:
    try:
        return media.file_response(file.name, file.storage)
    except FileNotFoundError:
        raise HttpError(404, "The file is missing from storage.") from None


# --- endpoints ----------------------------------------------------------------------------------


@router.post(
    "",
    response={201: JobOut, **error_responses(*WITH_BODY, 503)},
    summary="Create a staging job from an upload or an image URL",
    openapi_extra=CREATE_JOB_OPENAPI,
)
def create_job(request: HttpRequest) -> Status:
    """multipart/form-data with an `image` file, or JSON with `image_url`; the same fields otherwise."""
    user = require_perm(request, ADD_PERM)
    content_type = (request.content_type or "").lower()
    if content_type == "multipart/form-data":
        fields, image_file = _parse_multipart(request)
        gateway.require_configured()
    elif content_type == "application/json":
        fields = _parse_json(request)
        gateway.require_configured()  # before downloading anything for a job that could not run
        image_file = io.BytesIO(fetch.fetch_image(fields.image_url))
    else:
        raise invalid(
            field_error(
                ["body"], "Send multipart/form-data with an `image` file, or application/json with `image_url`."
            )
        )
    job = services.create_job(
        image_file,
        fields.model,
        room_type=fields.room_type,
        style=fields.style,
        instructions=fields.instructions,
        seed=fields.seed,
        config_override=fields.config,
        policy=services.OverridePolicy.of(user),
    )
    return Status(201, _job_out(request, job.pk))


@router.get("/{int:job_id}", response={200: JobOut, **error_responses(404)}, summary="A job, its attempts and outputs")
def get_job(request: HttpRequest, job_id: int) -> dict[str, Any]:
    require_perm(request, *VIEW_PERMS)
    _existing(job_id)
    return _job_out(request, job_id)


@router.post(
    "/{int:job_id}/reprocess",
    response={202: AttemptOut, **error_responses(*WITH_BODY, 404, 409)},
    summary="Add a new attempt to a finished job",
    openapi_extra=REPROCESS_OPENAPI,
)
def reprocess(request: HttpRequest, job_id: int) -> Status:
    """A new paid attempt, optionally with a new config override; 409 while an attempt is in progress.

    The body is optional (a bare POST is the common case), so it is parsed here, after the permission
    check, rather than by ninja (which would refuse an empty non-JSON body before the handler runs).
    """
    user = require_perm(request, CHANGE_PERM)
    _existing(job_id)
    payload = _parse_reprocess(request)
    attempt = services.retry_job(job_id, payload.config, policy=services.OverridePolicy.of(user))
    attempt.refresh_from_db()  # with a synchronous queue it may have moved on already
    return Status(202, _attempt_out(attempt))


@router.post(
    "/{int:job_id}/cancel",
    response={200: JobOut, **error_responses(404, 409)},
    summary="Cancel the job's unfinished attempt (also at Replicate)",
)
def cancel(request: HttpRequest, job_id: int) -> Status:
    """Stops paying for the job: its unfinished attempt is canceled here and, when a prediction runs, at
    Replicate. 409 when nothing is unfinished (the job keeps what it delivered)."""
    user = require_perm(request, CHANGE_PERM)
    _existing(job_id)
    attempt = services.cancel_job(job_id, reason=f"Canceled through the API by {user.get_username()}.")
    if attempt is None or attempt.state != Attempt.State.CANCELED:
        status = selectors.get_job(job_id).derived_status
        return Status(409, {"detail": f"Job {job_id} is {status}: nothing to cancel."})
    return Status(200, _job_out(request, job_id))


# --- files --------------------------------------------------------------------------------------
# Stored files are only readable here (staff with the job view permission) and, for Replicate, through
# a signed link (docs/operations.md#photos-and-outputs); the admin's images link here too.


@router.get(
    "/{int:job_id}/original",
    response=error_responses(404),
    url_name="job-original",
    summary="The job's original photo, as uploaded",
    openapi_extra=FILE_OPENAPI,
)
def get_original(request: HttpRequest, job_id: int) -> FileResponse:
    require_perm(request, *VIEW_PERMS)
    job = StagingJob.objects.filter(pk=job_id).first()
    if job is None:
        raise HttpError(404, f"No job {job_id}.")
    return _stream(job.photo)


@router.get(
    "/{int:job_id}/outputs/{int:index}",
    response=error_responses(404, 422),
    url_name="job-output",
    summary="One stored output of the job (its `index` in `outputs`)",
    openapi_extra=FILE_OPENAPI,
)
def get_output(request: HttpRequest, job_id: int, index: int, label: Literal["none"] = "none") -> FileResponse:
    """`label=none` (the default): the clean output as Replicate made it."""
    require_perm(request, *VIEW_PERMS)
    return _stream(_output(job_id, index).file)


@router.get(
    "/{int:job_id}/outputs/{int:index}/{kind}",
    response=error_responses(404, 422),
    url_name="job-output-derivative",
    summary="A file made from a stored output (`thumbnail`)",
    openapi_extra=FILE_OPENAPI,
)
def get_output_derivative(request: HttpRequest, job_id: int, index: int, kind: DerivativeKind) -> FileResponse:
    require_perm(request, *VIEW_PERMS)
    derivative = derivatives.get_derivative(_output(job_id, index), kind)
    if derivative is None:
        raise HttpError(404, f"Output {index} of job {job_id} has no {kind}.")
    return _stream(derivative.file)
