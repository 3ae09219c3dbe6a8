"""Writes of the staging pipeline: jobs (create, retry, cancel), submitting an attempt, and taking in
news about a prediction (its create's answer, a webhook, a poll, a reconcile).

State changes themselves are the compare-and-set transitions of `transitions`; this module decides
which one to call and does what a transition may not: calling Replicate (create, and cancel a
prediction nobody will use). An attempt creates at most one prediction: only the winner of
`transitions.claim` calls create, after `transitions.record_input` confirmed the claim still holds; a
create whose answer was lost is reconciled (`reconcile`) before anything new is created
(docs/architecture.md#never-pay-twice).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import IO, Any

from django.core.files.base import ContentFile
from django.db import transaction
from pydantic import ValidationError

from models_config.builders import DEFAULT_ROOM_TYPE, DEFAULT_STYLE
from models_config.registry import UnknownModelError, get_spec
from models_config.schemas import describe_errors, field_errors

from . import gateway, images, selectors, storage, transitions
from .errors import (
    PERMANENT,
    GatewayError,
    JobBusyError,
    JobInputError,
    ReplicateNotConfigured,
)
from .gateway import Prediction
from .models import Attempt, ConfigSource, StagingJob
from .queue import enqueue
from .transitions import Adoption

logger = logging.getLogger(__name__)

S = Attempt.State


def _check_override(slug: str, override: Mapping[str, Any]) -> None:
    """Refuse an override that would not validate with today's active config (JobInputError per field)."""
    try:
        selectors.resolve_config(slug, override)
    except ValidationError as exc:
        message = f"Invalid config override for {slug}: {describe_errors(exc.errors())}"
        raise JobInputError(message, field_errors(exc, ("config",))) from None


# --- Jobs ---------------------------------------------------------------------------------------


def create_job(
    image_file: IO[bytes],
    model: str,
    room_type: str = DEFAULT_ROOM_TYPE,
    style: str = DEFAULT_STYLE,
    instructions: str = "",
    seed: int | None = None,
    config_override: Mapping[str, Any] | None = None,
) -> StagingJob:
    """Validate everything, store the photo, create attempt 1 and queue its submission.

    Raises `ImageRejected` (bad photo), `JobInputError` (unknown model, invalid override; `.errors`
    has a `{loc, msg, type}` item per refused field) or `ReplicateNotConfigured`; in every case nothing is stored.
    """
    gateway.require_configured()
    try:
        spec = get_spec(model)
    except UnknownModelError as exc:
        raise JobInputError.about("model", str(exc)) from None
    if config_override is not None and not isinstance(config_override, Mapping):
        raise JobInputError.about("config", "The config override must be a JSON object.", "dict_type")
    override = dict(config_override) if config_override else None
    if override:
        _check_override(spec.slug, override)
    checked = images.check_upload(image_file)

    job = StagingJob(
        model_slug=model,
        room_type=room_type or DEFAULT_ROOM_TYPE,
        style=style or DEFAULT_STYLE,
        instructions=instructions or "",
        seed=seed,
        config_override=override,
        photo_width=checked.width,
        photo_height=checked.height,
    )
    try:
        with transaction.atomic():
            job.photo.save(f"original.{checked.extension}", ContentFile(checked.content), save=False)
            if checked.upright is not None:
                job.input_photo.save(f"input.{checked.extension}", ContentFile(checked.upright), save=False)
            job.save()
            attempt = Attempt.objects.create(job=job, number=1)
            enqueue("submit_attempt", attempt.pk)
    except Exception:
        storage.delete_files(job.photo, job.input_photo)
        raise
    return job


def retry_job(job_id: int, config_override: Mapping[str, Any] | None = None) -> Attempt:
    """Add a new attempt to a finished job (failed, canceled, or succeeded to reprocess) and queue it.

    `config_override`, when given, replaces the job's stored override for this and later attempts.
    Raises `JobBusyError` while the job still has an attempt in progress.
    """
    with transaction.atomic():
        job = StagingJob.objects.select_for_update().get(pk=job_id)
        latest = job.attempts.order_by("-number").first()
        if latest is not None and not latest.is_terminal:
            raise JobBusyError(f"Job {job_id} is still {latest.state}; cancel it or wait before retrying.")
        if config_override is not None:
            _check_override(job.model_slug, config_override)
            job.config_override = dict(config_override) or None
            job.save(update_fields=["config_override", "updated_at"])
        number = (latest.number if latest else 0) + 1
        attempt = Attempt.objects.create(job=job, number=number)
        enqueue("submit_attempt", attempt.pk)
    return attempt


def cancel_job(job_id: int, reason: str = "Canceled on request.") -> Attempt | None:
    """Cancel the job's unfinished attempt (also at Replicate). Returns it, or None if nothing ran."""
    attempt = Attempt.objects.filter(job_id=job_id).order_by("-number").first()
    if attempt is None or attempt.is_terminal:
        return None
    won = transitions.cancel(attempt.pk, reason)
    attempt.refresh_from_db()
    if won and attempt.prediction_id:
        gateway.cancel_quietly(attempt.prediction_id)
    return attempt


# --- Submitting ----------------------------------------------------------------------------------


def submit_attempt(attempt_id: int) -> None:
    """Claim the attempt, build its input, create its one prediction and save the id at once.

    Safe to run any number of times, concurrently: losers of the claim return without a call.
    """
    if not transitions.claim(attempt_id):
        return
    attempt = Attempt.objects.select_related("job").get(pk=attempt_id)
    job = attempt.job
    spec = get_spec(job.model_slug)
    try:
        image_url = storage.image_url_for_replicate(job.sent_photo, storage.content_type_of(job.sent_photo.name))
        resolved = selectors.resolve_input(job, image_url)
    except ValidationError as exc:
        message = f"The configuration for {job.model_slug} is invalid: {describe_errors(exc.errors())}"
        transitions.fail(attempt_id, message, PERMANENT)
        return
    except ReplicateNotConfigured as exc:
        transitions.fail(attempt_id, str(exc), PERMANENT)
        return
    except GatewayError as exc:  # the Files API upload
        transitions.fail(attempt_id, exc.message, exc.error_class, retry_after=exc.retry_after)
        return

    source = ConfigSource.OVERRIDE if job.config_override else ConfigSource(resolved.active.source)
    recorded = transitions.record_input(
        attempt_id,
        version_id=resolved.active.version_id,
        config=resolved.config.model_dump(mode="json"),
        source=source,
        model_input=resolved.input,
    )
    if not recorded:
        logger.info("Attempt %s ended before its create; nothing sent", attempt_id)
        return
    try:
        prediction = gateway.create_prediction(spec.ref, resolved.input, gateway.webhook_url_for(attempt))
    except GatewayError as exc:
        if exc.ambiguous:
            # The prediction may exist: look for it (reconcile) instead of creating again.
            logger.warning("Create for attempt %s may have happened (%s); reconciling", attempt_id, exc)
            enqueue("reconcile_attempt", attempt_id)
            return
        transitions.fail(attempt_id, exc.message, exc.error_class, retry_after=exc.retry_after)
        return
    adopt_prediction(attempt_id, prediction)


# --- News about a prediction ---------------------------------------------------------------------


def adopt_prediction(attempt_id: int, prediction: Prediction) -> Attempt | None:
    """Make `prediction` the attempt's and apply its news; cancel it at Replicate if nobody will use it.

    An orphan arises when the attempt ended meanwhile (canceled, failed by reconcile or a deadline):
    it is cancelled so it costs no more than it must. Returns None on a clash (another attempt's).
    """
    outcome = transitions.adopt(attempt_id, prediction.id)
    if outcome is Adoption.CLASH:
        return None
    attempt = Attempt.objects.get(pk=attempt_id)
    if outcome is Adoption.ORPHAN:
        logger.warning("Attempt %s is %s; canceling orphan prediction %s", attempt_id, attempt.state, prediction.id)
        gateway.cancel_quietly(prediction.id)
        return attempt
    return transitions.apply_update(attempt, prediction)


def apply_prediction_update(prediction: Prediction, attempt: Attempt | None = None) -> Attempt | None:
    """Apply news about `prediction` (webhook, poll) to the attempt that owns it.

    Returns the attempt, or None when no attempt owns this prediction. A webhook that beats the
    create's answer adopts the prediction; a late prediction of an attempt that was given up is
    cancelled.
    """
    if attempt is None:
        attempt = Attempt.objects.filter(prediction_id=prediction.id).first()
        if attempt is None:
            return None
    elif attempt.prediction_id is None and attempt.state == S.SUBMITTING:
        return adopt_prediction(attempt.pk, prediction)
    if attempt.prediction_id != prediction.id:
        logger.warning("Prediction %s does not belong to attempt %s; ignored", prediction.id, attempt.pk)
        if attempt.prediction_id is None and attempt.is_terminal and prediction.running:
            gateway.cancel_quietly(prediction.id)  # the attempt was given up: stop paying for it
        return attempt
    return transitions.apply_update(attempt, prediction)
