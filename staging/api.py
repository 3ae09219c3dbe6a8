"""The jobs API (mounted at /api/v1/jobs): create a staging job, follow it, reprocess it, cancel it, choose its
output. Its files are served by `files_api`, mounted at the same place.

Handlers are thin: they parse and check the request, fetch a photo URL through `fetch` (the SSRF
defences live there), and call `services` / `selectors`. What those raise is answered by `api.errors`
in the config API's shapes: 422 `{"detail": [{"loc": ["body", field, ...], "msg", "type"}]}` with
nothing stored, `{"detail": str}` otherwise. Same authentication as the config API (personal token or
staff session with CSRF). Who may see which job is `selectors.visible_jobs`: a job the caller may not
see is a 404, as an unknown one is; acting on a job also needs the action's permission (403).

`POST /jobs` takes two bodies, so it parses the request itself instead of declaring ninja
parameters (ninja cannot bind one operation to both a multipart form and a JSON body); the OpenAPI
document still describes both (`schemas.CREATE_JOB_OPENAPI`).
"""

from __future__ import annotations

import io
import json
import math
from typing import Any

from django.core.files.uploadedfile import UploadedFile
from django.http import HttpRequest
from django.urls import reverse
from ninja import Query, Router, Status
from ninja.errors import HttpError
from pydantic import ValidationError

from api.auth import require_perm
from api.errors import field_error, invalid
from api.schemas import WITH_BODY, error_responses
from models_config.schemas import field_errors

from . import delivery, derivatives, fetch, gateway, listings, selectors, services
from .models import Attempt, DerivativeKind, StagedImage, StagingJob
from .schemas import (
    CREATE_JOB_OPENAPI,
    REPROCESS_OPENAPI,
    AttemptOut,
    JobFieldsIn,
    JobJsonIn,
    JobListQuery,
    JobOut,
    JobPageOut,
    ReprocessIn,
)
from .selectors import CHANGE_PERM, CREATE_PERM

router = Router(tags=["jobs"])  # authenticated by the API root (api/root.py)

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
    """The absolute URL of one of the jobs API's endpoints (`files_api`'s for files: they are only ever linked
    through them)."""
    return request.build_absolute_uri(reverse(f"api:{name}", kwargs=kwargs))


def _attempt_out(request: HttpRequest, attempt: Attempt, chosen_id: int | None = None) -> dict[str, Any]:
    return {
        "number": attempt.number,
        "state": attempt.state,
        "error": attempt.error,
        "error_class": attempt.error_class,
        "held_reason": attempt.held_reason,
        "held_at": attempt.held_at,
        "config_version": attempt.config_version.number if attempt.config_version_id else None,
        "config_source": attempt.config_source,
        "arm": attempt.arm,
        "prediction_id": attempt.prediction_id,
        "predict_time": attempt.predict_time,
        "cost": float(attempt.cost) if attempt.cost is not None else None,
        "created_at": attempt.created_at,
        "submitted_at": attempt.submitted_at,
        "finished_at": attempt.finished_at,
        "outputs": [_output_out(request, image, attempt, chosen_id) for image in attempt.images.all()],
    }


def job_out(request: HttpRequest, job_id: int) -> dict[str, Any]:
    """The job read fresh (status derived in SQL), with every attempt's outputs and the one to deliver."""
    job = selectors.get_job(job_id)
    attempts = list(selectors.attempts_with_outputs(job))
    by_pk = {attempt.pk: attempt for attempt in attempts}
    deliverable = selectors.deliverable(job)
    chosen_id = deliverable.pk if deliverable else None
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
        "listing": job.listing_id,
        "photo": {
            "url": _url(request, "job-original", job_id=job.pk),
            "width": job.photo_width,
            "height": job.photo_height,
        },
        "created_by": _username(job),
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "attempts": [_attempt_out(request, attempt, chosen_id) for attempt in attempts],
        "outputs": [
            _output_out(request, image, by_pk[image.attempt_id], chosen_id) for image in selectors.outputs_of(job)
        ],
        "chosen": _output_out(request, deliverable, by_pk[deliverable.attempt_id], chosen_id) if deliverable else None,
        "chosen_by_staff": job.chosen_output_id is not None,
    }


def _username(job: StagingJob) -> str | None:
    return job.created_by.get_username() if job.created_by_id else None


def _summary_out(request: HttpRequest, job: StagingJob) -> dict[str, Any]:
    """A row of the list: from the listed queryset's own columns and joins (no query per row)."""
    return {
        "id": job.pk,
        "uid": job.uid,
        "url": _url(request, "job", job_id=job.pk),
        "status": job.derived_status,
        "model": job.model_slug,
        "room_type": job.room_type,
        "style": job.style,
        "listing": job.listing_id,
        "created_by": _username(job),
        "created_at": job.created_at,
        "updated_at": job.updated_at,
    }


def _output_out(request: HttpRequest, image: StagedImage, attempt: Attempt, chosen_id: int | None) -> dict[str, Any]:
    made = derivatives.by_kind(image)
    where = {"job_id": attempt.job_id, "index": image.index}
    query = f"?attempt={attempt.number}"  # outputs of any attempt, not only the delivered one
    links = {kind: _url(request, "job-output-derivative", kind=kind, **where) + query for kind in made}
    return {
        "index": image.index,
        "attempt": attempt.number,
        "chosen": image.pk == chosen_id,
        "url": _url(request, "job-output", **where) + query,
        "thumbnail_url": links.get(DerivativeKind.THUMBNAIL),
        "derivatives": links,
        "content_type": image.content_type,
        "width": image.width,
        "height": image.height,
        "size": image.size,
        "checksum": image.checksum,
    }


def visible_job(request: HttpRequest, job_id: int) -> StagingJob:
    """The job, if the caller may see it; else the same 404 as for an id that does not exist."""
    job = selectors.visible_jobs(request.auth).filter(pk=job_id).first()
    if job is None:
        raise HttpError(404, f"No job {job_id}.")
    return job


# --- endpoints ----------------------------------------------------------------------------------


@router.post(
    "",
    response={201: JobOut, **error_responses(*WITH_BODY, 503)},
    summary="Create a staging job from an upload or an image URL",
    openapi_extra=CREATE_JOB_OPENAPI,
)
def create_job(request: HttpRequest) -> Status:
    """multipart/form-data with an `image` file, or JSON with `image_url`; the same fields otherwise."""
    user = require_perm(request, CREATE_PERM)
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
    listing, style, seed = None, fields.style, fields.seed
    if fields.listing is not None:
        sent_style = fields.style if "style" in fields.model_fields_set else None
        listing, style, seed = listings.fields_for_job(fields.listing, fields.model, sent_style, fields.seed)
    job = services.create_job(
        image_file,
        fields.model,
        room_type=fields.room_type,
        style=style,
        instructions=fields.instructions,
        seed=seed,
        config_override=fields.config,
        policy=services.OverridePolicy.of(user),
        listing=listing,
        created_by=user,
    )
    return Status(201, job_out(request, job.pk))


@router.get("", response={200: JobPageOut, **error_responses(422)}, summary="The jobs you may see, newest first")
def list_jobs(request: HttpRequest, query: Query[JobListQuery]) -> dict[str, Any]:
    """Filtered and paged; every job for staff who may view jobs, your own otherwise. A page past the
    last one answers 200 with no items (the count and the number of pages say where the jobs are)."""
    jobs = selectors.list_jobs(
        request.auth,
        selectors.JobFilter(
            status=query.status, model=query.model, listing=query.listing, since=query.since, until=query.until
        ),
    )
    count = jobs.count()
    start = (query.page - 1) * query.page_size
    page = jobs[start : start + query.page_size] if start < count else []
    return {
        "items": [_summary_out(request, job) for job in page],
        "count": count,
        "page": query.page,
        "pages": math.ceil(count / query.page_size),
    }


@router.get(
    "/{int:job_id}",
    response={200: JobOut, **error_responses(404)},
    url_name="job",
    summary="A job, its attempts and outputs",
)
def get_job(request: HttpRequest, job_id: int) -> dict[str, Any]:
    visible_job(request, job_id)
    return job_out(request, job_id)


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
    visible_job(request, job_id)
    payload = _parse_reprocess(request)
    attempt = services.retry_job(job_id, payload.config, policy=services.OverridePolicy.of(user))
    attempt.refresh_from_db()  # with a synchronous queue it may have moved on already
    return Status(202, _attempt_out(request, attempt))


@router.post(
    "/{int:job_id}/cancel",
    response={200: JobOut, **error_responses(404, 409)},
    summary="Cancel the job's unfinished attempt (also at Replicate)",
)
def cancel(request: HttpRequest, job_id: int) -> Status:
    """Stops paying for the job: its unfinished attempt is canceled here and, when a prediction runs, at
    Replicate. 409 when nothing is unfinished (the job keeps what it delivered)."""
    user = require_perm(request, CHANGE_PERM)
    visible_job(request, job_id)
    attempt = services.cancel_job(job_id, reason=f"Canceled through the API by {user.get_username()}.")
    if attempt is None or attempt.state != Attempt.State.CANCELED:
        status = selectors.get_job(job_id).derived_status
        return Status(409, {"detail": f"Job {job_id} is {status}: nothing to cancel."})
    return Status(200, job_out(request, job_id))


@router.post(
    "/{int:job_id}/outputs/{int:index}/choose",
    response={200: JobOut, **error_responses(404, 422)},
    url_name="job-output-choose",
    summary="Mark one output as the one to deliver",
)
def choose_output(request: HttpRequest, job_id: int, index: int, attempt: int | None = None) -> dict[str, Any]:
    """Output `index` of attempt `attempt` (default: the delivering attempt) becomes the job's `chosen` output;
    downloads and exports then deliver it. Choosing costs nothing and can be changed at any time."""
    user = require_perm(request, CHANGE_PERM)
    visible_job(request, job_id)
    delivery.choose_output(job_id, index, attempt, user=user)
    return job_out(request, job_id)
