"""The transitions after the create: apply news about the prediction, take over a silent collection, and end
the attempt (succeed, cancel, fail), scheduling the next attempt after a transient failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from .. import ledger, storage
from ..errors import DATA_REMOVED_MESSAGE, PERMANENT, TRANSIENT, clamp_wait, classify_prediction_error
from ..models import Attempt
from ..predictions import Prediction, PredictionStatus
from ..queue import enqueue, enqueue_at
from .base import log_change, logger, states_before

S = Attempt.State

# Replicate's status -> the attempt state it moves to (a succeeded prediction still has outputs to copy).
STATE_FOR_STATUS = {
    PredictionStatus.STARTING: S.SUBMITTED,
    PredictionStatus.PROCESSING: S.PROCESSING,
    PredictionStatus.SUCCEEDED: S.COLLECTING,
    PredictionStatus.FAILED: S.FAILED,
    PredictionStatus.CANCELED: S.CANCELED,
    PredictionStatus.ABORTED: S.CANCELED,
}


# --- Progress ------------------------------------------------------------------------------------


def apply_update(attempt: Attempt, prediction: Prediction, *, now: datetime | None = None) -> Attempt:
    """Apply news about the attempt's own prediction, forward only; returns the attempt read again.

    Succeeded: the output is saved and its collection queued. Failed: the error is classified and a
    transient failure schedules the next attempt. Older or repeated news only notes that we heard.
    """
    if attempt.prediction_id != prediction.id:
        raise ValueError(f"Prediction {prediction.id} is not attempt {attempt.pk}'s")
    target = STATE_FOR_STATUS.get(prediction.status) if prediction.status else None
    if target is None:
        logger.warning("Unknown prediction status %r for %s; ignored", prediction.raw_status, prediction.id)
        return attempt
    now = now or timezone.now()
    common: dict[str, Any] = {"replicate_status": prediction.raw_status, "checked_at": now}
    if prediction.predict_time is not None:
        common["predict_time"] = prediction.predict_time

    if target == S.FAILED:
        error_class, message = classify_prediction_error(prediction.error)
        fail(attempt.pk, message, error_class, extra=common, now=now)
    elif target == S.CANCELED:
        won = Attempt.objects.filter(pk=attempt.pk, state__in=states_before(S.CANCELED)).update(
            state=S.CANCELED, error="The prediction was canceled at Replicate.", finished_at=now, **common
        )
        if won:
            log_change(attempt.pk, S.CANCELED)
    elif target == S.COLLECTING:
        won = Attempt.objects.filter(pk=attempt.pk, state__in=states_before(S.COLLECTING)).update(
            state=S.COLLECTING, output=prediction.output, **common
        )
        if won:
            log_change(attempt.pk, S.COLLECTING)
            if prediction.output is None and prediction.data_removed:
                fail(attempt.pk, DATA_REMOVED_MESSAGE, PERMANENT, now=now)
            else:
                enqueue("collect_outputs", attempt.pk)
    else:
        won = Attempt.objects.filter(pk=attempt.pk, state__in=states_before(target)).update(state=target, **common)
        if won:
            log_change(attempt.pk, target)
        else:  # the same state again (or older news): only note that we heard from it
            Attempt.objects.filter(pk=attempt.pk, state=target).update(**common)
    attempt.refresh_from_db()
    return attempt


def reclaim_collect(attempt_id: int, *, silent_since: datetime, now: datetime | None = None) -> bool:
    """Take over a collection that has been silent since `silent_since` (its worker died); one taker wins."""
    now = now or timezone.now()
    return bool(
        Attempt.objects.filter(pk=attempt_id, state=S.COLLECTING, checked_at__lte=silent_since).update(checked_at=now)
    )


# --- Ending --------------------------------------------------------------------------------------


def succeed(attempt_id: int, cost: Decimal, *, now: datetime | None = None) -> bool:
    """collecting -> succeeded once every output is stored, with the actual cost."""
    with transaction.atomic():
        won = Attempt.objects.filter(pk=attempt_id, state=S.COLLECTING).update(
            state=S.SUCCEEDED, finished_at=now or timezone.now(), cost=cost, error=""
        )
        if won:
            ledger.settle(attempt_id, cost)
    if won:
        log_change(attempt_id, S.SUCCEEDED)
    return bool(won)


def cancel(attempt_id: int, reason: str, *, now: datetime | None = None) -> bool:
    """Any unfinished state -> canceled. True when this call made the change."""
    now = now or timezone.now()
    with transaction.atomic():
        won = Attempt.objects.filter(pk=attempt_id, state__in=states_before(S.CANCELED)).update(
            state=S.CANCELED, error=reason, error_class="", finished_at=now, checked_at=now
        )
        if won:
            ledger.settle(attempt_id, None)
    if won:
        log_change(attempt_id, S.CANCELED)
    return bool(won)


def fail(
    attempt_id: int,
    message: str,
    error_class: str,
    *,
    retry_after: float | None = None,
    extra: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> bool:
    """Any unfinished state -> failed; a transient error schedules the job's next attempt.

    Returns whether this call made the change (False: someone else already ended the attempt).
    """
    now = now or timezone.now()
    with transaction.atomic():
        won = Attempt.objects.filter(pk=attempt_id, state__in=states_before(S.FAILED)).update(
            state=S.FAILED, error=message, error_class=error_class, finished_at=now, **(extra or {})
        )
        if not won:
            return False
        ledger.settle(attempt_id, None)  # per-image prices: a prediction that returned no image cost nothing
        if error_class == TRANSIENT:
            _schedule_next_attempt(Attempt.objects.get(pk=attempt_id), retry_after, now)
    # Replicate's message may quote the photo's signed link: its signature stays out of the log.
    log_change(attempt_id, S.FAILED, error_class=error_class, error=storage.redact_signatures(message))
    return True


def backoff_seconds(number: int, retry_after: float | None) -> float:
    """Exponential backoff after attempt `number`, never shorter than a 429's named wait."""
    base = settings.STAGING_RETRY_BASE_SECONDS * (2 ** min(max(0, number - 1), 32))
    return clamp_wait(max(min(base, settings.STAGING_RETRY_MAX_SECONDS), clamp_wait(retry_after)))


def _schedule_next_attempt(failed: Attempt, retry_after: float | None, now: datetime) -> Attempt | None:
    """The next attempt of a transient failure, bounded by STAGING_MAX_ATTEMPTS paid attempts."""
    max_attempts = settings.STAGING_MAX_ATTEMPTS
    last = Attempt.objects.filter(job_id=failed.job_id).aggregate(n=Max("number"))["n"] or failed.number
    if last != failed.number:
        return None  # a newer attempt exists already (a retry raced us)
    if failed.number >= max_attempts:
        Attempt.objects.filter(pk=failed.pk).update(
            error=f"{failed.error} Gave up after {failed.number} attempt(s); retry the job to try again."
        )
        return None
    delay = backoff_seconds(failed.number, retry_after)
    next_at = now + timedelta(seconds=delay) if delay > 0 else None
    attempt = Attempt.objects.create(
        job_id=failed.job_id,
        number=failed.number + 1,
        next_retry_at=next_at,
        pinned_version_id=failed.pinned_version_id,  # a retry keeps the version the operator asked for
    )
    Attempt.objects.filter(pk=failed.pk).update(
        error=f"{failed.error} Retrying as attempt {attempt.number} of {max_attempts} in {delay:.0f}s."
    )
    if next_at is None:
        enqueue("submit_attempt", attempt.pk)
    else:
        enqueue_at("submit_attempt", attempt.pk, at=next_at)  # docs/architecture.md#wake-ups-on-time
    return attempt
