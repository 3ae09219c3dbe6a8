"""Writes of the staging pipeline: jobs, the submit step, state transitions, retries, cancel.

Rules that hold everywhere here:

- Every state change is a compare-and-set UPDATE (`filter(state__in=…).update(…)`): when two
  workers, a webhook and the poller race, exactly one wins and the others do nothing.
- States only move forward (`Attempt.RANK`); a terminal attempt never changes again.
- An attempt creates at most one prediction: only the worker that wins the queued→submitting claim
  may call create; its input is recorded before the call; an attempt with a prediction id is only
  read; a create whose answer was lost is reconciled (`reconcile.py`) before anything new is created.
- Queue work follows commits (`transaction.on_commit`), so a task never runs before its rows exist.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal
from typing import IO, Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import Max, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from django_q.tasks import async_task
from pydantic import ValidationError

from models_config.builders import DEFAULT_ROOM_TYPE, DEFAULT_STYLE
from models_config.registry import UnknownModelError, get_spec
from models_config.schemas import describe_errors, error_fields

from . import gateway, images, selectors, storage
from .errors import (
    PERMANENT,
    TRANSIENT,
    GatewayError,
    JobBusyError,
    JobInputError,
    ReplicateNotConfigured,
    classify_prediction_error,
)
from .models import Attempt, ConfigSource, StagingJob

logger = logging.getLogger(__name__)

S = Attempt.State
# Replicate status -> our attempt state.
STATUS_TO_STATE = {
    "starting": S.SUBMITTED,
    "processing": S.PROCESSING,
    "succeeded": S.COLLECTING,
    "failed": S.FAILED,
    "canceled": S.CANCELED,
    "aborted": S.CANCELED,
}


def _before(state: str) -> list[str]:
    """States an attempt may move to `state` from (strictly lower rank)."""
    return [s for s, rank in Attempt.RANK.items() if rank < Attempt.RANK[state]]


def enqueue(func: str, *args: Any) -> None:
    """Queue `staging.tasks.<func>(*args)` once the current transaction commits."""
    name = f"{func}-{'-'.join(map(str, args))}"
    transaction.on_commit(lambda: async_task(f"staging.tasks.{func}", *args, task_name=name))


def _check_override(slug: str, override: Mapping[str, Any]) -> None:
    """Refuse an override that would not validate with today's active config (JobInputError per field)."""
    try:
        selectors.resolve_config(slug, override)
    except ValidationError as exc:
        errors = error_fields(exc.errors())
        raise JobInputError(f"Invalid config override for {slug}: {describe_errors(exc.errors())}", errors) from None


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
    maps fields to messages) or `ReplicateNotConfigured`; in every case nothing is stored.
    """
    gateway.require_configured()
    try:
        spec = get_spec(model)
    except UnknownModelError as exc:
        raise JobInputError(str(exc), {"model": str(exc)}) from None
    if config_override is not None and not isinstance(config_override, Mapping):
        raise JobInputError("The config override must be a JSON object.", {"config_override": "must be an object"})
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
        for field in (job.photo, job.input_photo):
            if field:
                field.storage.delete(field.name)
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
    now = timezone.now()
    won = Attempt.objects.filter(pk=attempt.pk, state__in=_before(S.CANCELED)).update(
        state=S.CANCELED, error=reason, error_class="", finished_at=now, checked_at=now
    )
    attempt.refresh_from_db()
    if won and attempt.prediction_id:
        _cancel_quietly(attempt.prediction_id)
    return attempt


def _cancel_quietly(prediction_id: str) -> None:
    try:
        gateway.cancel_prediction(prediction_id)
    except GatewayError as exc:
        logger.warning("Could not cancel prediction %s: %s", prediction_id, exc)


# --- Submitting ----------------------------------------------------------------------------------


def webhook_url(attempt: Attempt) -> str | None:
    """Where Replicate should report this attempt's progress (None: no public URL, poll instead)."""
    if not settings.STAGING_PUBLIC_URL:
        return None
    return f"{settings.STAGING_PUBLIC_URL}/webhooks/replicate/?attempt={attempt.token}"


def claim_attempt(attempt_id: int) -> bool:
    """queued → submitting, if due. Only the one caller that gets True may create a prediction."""
    now = timezone.now()
    return bool(
        Attempt.objects.filter(pk=attempt_id, state=S.QUEUED)
        .exclude(next_retry_at__gt=now)
        .update(
            state=S.SUBMITTING,
            submitting_at=now,
            checked_at=now,
            # Kept across a requeue (reconcile), so a submit that keeps crashing still ends at its deadline.
            deadline=Coalesce("deadline", Value(now + timedelta(seconds=settings.STAGING_ATTEMPT_DEADLINE_SECONDS))),
        )
    )


def submit_attempt(attempt_id: int) -> None:
    """Claim the attempt, build its input, create its one prediction and save the id at once.

    Safe to run any number of times, concurrently: losers of the claim return without a call.
    """
    if not claim_attempt(attempt_id):
        return
    attempt = Attempt.objects.select_related("job").get(pk=attempt_id)
    job = attempt.job
    spec = get_spec(job.model_slug)
    try:
        image_url = storage.image_url_for_replicate(job.sent_photo, storage.content_type_of(job.sent_photo.name))
        resolved = selectors.resolve_input(job, image_url)
    except ValidationError as exc:
        message = f"The configuration for {job.model_slug} is invalid: {describe_errors(exc.errors())}"
        fail_attempt(attempt_id, message, PERMANENT)
        return
    except ReplicateNotConfigured as exc:
        fail_attempt(attempt_id, str(exc), PERMANENT)
        return
    except GatewayError as exc:  # the Files API upload
        fail_attempt(attempt_id, exc.message, exc.error_class, retry_after=exc.retry_after)
        return

    # Recorded before the create: reconcile can then recognise the prediction by its input.
    Attempt.objects.filter(pk=attempt_id).update(
        config_version_id=resolved.active.version_id,
        config=resolved.config.model_dump(mode="json"),
        config_source=ConfigSource.OVERRIDE if job.config_override else ConfigSource(resolved.active.source),
        input=resolved.input,
    )
    model_input = resolved.input
    try:
        prediction = gateway.create_prediction(spec.ref, model_input, webhook_url(attempt))
    except GatewayError as exc:
        if exc.ambiguous:
            # The prediction may exist: look for it now; if not listed yet, the poller retries later.
            logger.warning("Create for attempt %s may have happened (%s); reconciling", attempt_id, exc)
            from .reconcile import reconcile_attempt

            reconcile_attempt(attempt_id, final=False)
            return
        fail_attempt(attempt_id, exc.message, exc.error_class, retry_after=exc.retry_after)
        return
    adopt_prediction(attempt_id, prediction)


def adopt_prediction(attempt_id: int, prediction: dict[str, Any]) -> Attempt | None:
    """Record that `prediction` belongs to the attempt (after create, by webhook, or by reconcile).

    If the attempt meanwhile ended (canceled, failed by reconcile or deadline) the prediction is an
    orphan: it is cancelled at Replicate so it costs no more than it must.
    """
    now = timezone.now()
    pid = prediction["id"]
    try:
        with transaction.atomic():  # a savepoint: a clash must not break the caller's transaction
            won = Attempt.objects.filter(pk=attempt_id, state=S.SUBMITTING, prediction_id__isnull=True).update(
                prediction_id=pid, state=S.SUBMITTED, submitted_at=now, checked_at=now
            )
    except IntegrityError:
        logger.error("Prediction %s is already recorded on another attempt; not adopting it for %s", pid, attempt_id)
        return None
    attempt = Attempt.objects.get(pk=attempt_id)
    if not won and attempt.prediction_id != pid:
        logger.warning("Attempt %s is %s; canceling orphan prediction %s", attempt_id, attempt.state, pid)
        _cancel_quietly(pid)
        return attempt
    return apply_prediction_update(prediction, attempt=attempt)


# --- Progress ------------------------------------------------------------------------------------


def apply_prediction_update(prediction: dict[str, Any], attempt: Attempt | None = None) -> Attempt | None:
    """Apply a prediction JSON (webhook, poll, create answer) to its attempt, forward only.

    Returns the attempt, or None when no attempt owns this prediction. On success the output URLs
    are saved and `collect_outputs` is queued; on failure the error is classified and, for a
    transient one, the next attempt is scheduled.
    """
    pid = prediction.get("id")
    if attempt is None:
        attempt = Attempt.objects.filter(prediction_id=pid).first()
        if attempt is None:
            return None
    elif attempt.prediction_id is None and attempt.state == S.SUBMITTING and pid:
        return adopt_prediction(attempt.pk, prediction)  # a webhook that beat the create's answer
    if attempt.prediction_id != pid:
        logger.warning("Prediction %s does not belong to attempt %s; ignored", pid, attempt.pk)
        orphan = attempt.prediction_id is None and attempt.is_terminal
        if orphan and prediction.get("status") in ("starting", "processing"):
            _cancel_quietly(pid)  # the attempt was given up: stop paying for its late prediction
        return attempt

    status = prediction.get("status") or ""
    target = STATUS_TO_STATE.get(status)
    if target is None:
        logger.warning("Unknown prediction status %r for %s; ignored", status, pid)
        return attempt
    now = timezone.now()
    metrics = prediction.get("metrics") or {}
    common: dict[str, Any] = {"replicate_status": status, "checked_at": now}
    if metrics.get("predict_time") is not None:
        common["predict_time"] = metrics["predict_time"]

    if target == S.FAILED:
        error_class, message = classify_prediction_error(prediction.get("error"))
        fail_attempt(attempt.pk, message, error_class, extra=common)
    elif target == S.CANCELED:
        Attempt.objects.filter(pk=attempt.pk, state__in=_before(S.CANCELED)).update(
            state=S.CANCELED, error="The prediction was canceled at Replicate.", finished_at=now, **common
        )
    elif target == S.COLLECTING:
        won = Attempt.objects.filter(pk=attempt.pk, state__in=_before(S.COLLECTING)).update(
            state=S.COLLECTING, output=prediction.get("output"), **common
        )
        if won:
            if prediction.get("output") is None and prediction.get("data_removed"):
                fail_attempt(attempt.pk, DATA_REMOVED_MESSAGE, PERMANENT)
            else:
                enqueue("collect_outputs", attempt.pk)
    else:
        won = Attempt.objects.filter(pk=attempt.pk, state__in=_before(target)).update(state=target, **common)
        if not won:  # same state again (or older news): only note that we heard from it
            Attempt.objects.filter(pk=attempt.pk, state=target).update(**common)
    attempt.refresh_from_db()
    return attempt


DATA_REMOVED_MESSAGE = (
    "Replicate deleted this prediction's outputs (data_removed, one hour after completion) before they were copied. "
    "Retry the job to run the model again."
)


def fail_attempt(
    attempt_id: int,
    message: str,
    error_class: str,
    *,
    retry_after: float | None = None,
    extra: Mapping[str, Any] | None = None,
) -> bool:
    """Move a non-terminal attempt to failed; for a transient error schedule the next attempt.

    Returns whether this call made the change (False: someone else already ended the attempt).
    """
    now = timezone.now()
    with transaction.atomic():
        won = Attempt.objects.filter(pk=attempt_id, state__in=_before(S.FAILED)).update(
            state=S.FAILED, error=message, error_class=error_class, finished_at=now, **(extra or {})
        )
        if not won:
            return False
        attempt = Attempt.objects.select_related("job").get(pk=attempt_id)
        if error_class == TRANSIENT:
            _schedule_next_attempt(attempt, retry_after)
    logger.info("Attempt %s failed (%s): %s", attempt_id, error_class, message)
    return True


def backoff_seconds(number: int, retry_after: float | None) -> float:
    """Exponential backoff after attempt `number`, never shorter than a 429's named wait."""
    base = settings.STAGING_RETRY_BASE_SECONDS * (2 ** max(0, number - 1))
    return max(min(base, settings.STAGING_RETRY_MAX_SECONDS), retry_after or 0.0)


def _schedule_next_attempt(failed: Attempt, retry_after: float | None) -> Attempt | None:
    max_attempts = settings.STAGING_MAX_ATTEMPTS
    last = failed.job.attempts.aggregate(n=Max("number"))["n"] or failed.number
    if last != failed.number:
        return None  # a newer attempt exists already (a retry_job raced us)
    if failed.number >= max_attempts:
        Attempt.objects.filter(pk=failed.pk).update(
            error=f"{failed.error} Gave up after {failed.number} attempt(s); retry the job to try again."
        )
        return None
    delay = backoff_seconds(failed.number, retry_after)
    next_at = timezone.now() + timedelta(seconds=delay) if delay > 0 else None
    attempt = Attempt.objects.create(job_id=failed.job_id, number=failed.number + 1, next_retry_at=next_at)
    Attempt.objects.filter(pk=failed.pk).update(
        error=f"{failed.error} Retrying as attempt {attempt.number} of {max_attempts} in {delay:.0f}s."
    )
    if next_at is None:
        enqueue("submit_attempt", attempt.pk)
    return attempt


def mark_succeeded(attempt_id: int, n_outputs: int) -> bool:
    """collecting → succeeded once every output is stored; records the cost."""
    attempt = Attempt.objects.select_related("job").get(pk=attempt_id)
    price = get_spec(attempt.job.model_slug).price_per_image
    return bool(
        Attempt.objects.filter(pk=attempt_id, state=S.COLLECTING).update(
            state=S.SUCCEEDED, finished_at=timezone.now(), cost=price * Decimal(n_outputs), error=""
        )
    )
