"""Every state change of an `Attempt`, each one a compare-and-set UPDATE.

This module is the one place that writes an attempt's `state` (docs/architecture.md#never-pay-twice):

- each transition is `Attempt.objects.filter(pk=…, state__in=<allowed from>).update(…)`, so when two
  workers, a webhook and the poller race, exactly one wins and the others change nothing;
- states only move forward (`Attempt.RANK`): a terminal attempt never changes again;
- only the caller that wins `claim` may create a prediction, and only while `record_input` still
  finds the attempt claimed; `adopt` is the only way a prediction id gets onto an attempt.

Transitions touch the database and the queue (follow-up work is enqueued on commit), never Replicate:
callers that must cancel a prediction at Replicate do so when a transition tells them to. That keeps
every rule here testable without HTTP.

Every change a caller wins is logged once, by `_log_change` (docs/operations.md#logs-and-error-tracking).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from . import ledger, storage
from .errors import DATA_REMOVED_MESSAGE, PERMANENT, TRANSIENT, clamp_wait, classify_prediction_error
from .gateway import Prediction, PredictionStatus
from .models import Arm, Attempt, ConfigSource
from .queue import enqueue, enqueue_at

logger = logging.getLogger(__name__)

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


def states_before(state: str) -> list[str]:
    """States an attempt may move to `state` from (strictly lower rank)."""
    return [s for s, rank in Attempt.RANK.items() if rank < Attempt.RANK[state]]


def _log_change(attempt_id: int, state: str, **fields: Any) -> None:
    """One line for a change this caller won, naming the job, attempt, prediction and config version.

    The identifiers are read back (one query, only while INFO is logged) because a compare-and-set
    UPDATE returns none of them; never the token or the input, which work as credentials. With
    `LOG_FORMAT=json` each name below is a key of its own.
    """
    if not logger.isEnabledFor(logging.INFO):
        return
    row = (
        Attempt.objects.filter(pk=attempt_id)
        .values("job_id", "number", "prediction_id", "config_version__number")
        .first()
    )
    if row is None:
        return
    context = {
        "job_id": row["job_id"],
        "attempt": row["number"],
        "attempt_id": attempt_id,
        "state": state,
        "prediction_id": row["prediction_id"],
        "config_version": row["config_version__number"],
        **fields,
    }
    details = "".join(f", {key} {value}" for key, value in fields.items())
    logger.info(
        "Job %s attempt %s -> %s (prediction %s, config version %s%s)",
        context["job_id"],
        context["attempt"],
        state,
        context["prediction_id"],
        context["config_version"],
        details,
        extra=context,
    )


# --- Submitting ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """What a claim reserves: the attempt's estimated cost against the caps of its model (`ledger.reserve`)."""

    slug: str
    estimate: Decimal


def claim(attempt_id: int, *, now: datetime | None = None, budget: Budget | None = None) -> bool:
    """queued -> submitting, if due. Only the one caller that gets True may create a prediction.

    With `budget`, the claim also reserves the estimate in the same transaction; when a spend cap is
    reached the attempt goes to held instead (docs/architecture.md#spend-caps) and the caller gets False.
    """
    now = now or timezone.now()
    deadline = now + timedelta(seconds=settings.STAGING_ATTEMPT_DEADLINE_SECONDS)
    with transaction.atomic():
        won = (
            Attempt.objects.filter(pk=attempt_id, state=S.QUEUED)
            .exclude(next_retry_at__gt=now)
            # The deadline is kept across a requeue, so a submit that keeps crashing still ends at its deadline.
            .update(
                state=S.SUBMITTING, submitting_at=now, checked_at=now, deadline=Coalesce("deadline", Value(deadline))
            )
        )
        held = None
        if won and budget is not None:
            held = ledger.reserve(attempt_id, budget.slug, budget.estimate, ledger.day_of(now))
            if held is not None:
                # Nothing was sent: the deadline starts again at the claim that gets the budget.
                Attempt.objects.filter(pk=attempt_id, state=S.SUBMITTING).update(
                    state=S.HELD,
                    held_reason=held,
                    held_at=now,
                    estimated_cost=budget.estimate,
                    submitting_at=None,
                    deadline=None,
                )
    if held is not None:
        _log_change(attempt_id, S.HELD, reason=held)
        return False
    if won:
        _log_change(attempt_id, S.SUBMITTING)
    return bool(won)


def resume(attempt_id: int) -> bool:
    """held -> queued, and its submission queued: budget may be there now (the claim checks again)."""
    with transaction.atomic():
        won = Attempt.objects.filter(pk=attempt_id, state=S.HELD).update(
            state=S.QUEUED, held_reason="", held_at=None, next_retry_at=None
        )
        if won:
            enqueue("submit_attempt", attempt_id)
    if won:
        _log_change(attempt_id, S.QUEUED, resumed=True)
    return bool(won)


def record_input(
    attempt_id: int,
    *,
    version_id: int | None,
    config: dict[str, Any],
    source: ConfigSource,
    model_input: dict[str, Any],
    arm: Arm = Arm.ACTIVE,
) -> bool:
    """Record what the attempt is about to send, before the create (reconcile recognises it by this).

    False when the attempt is no longer claimed without a prediction (canceled or past its deadline
    meanwhile): the caller must then not create anything.
    """
    return bool(
        Attempt.objects.filter(pk=attempt_id, state=S.SUBMITTING, prediction_id__isnull=True).update(
            config_version_id=version_id, config=config, config_source=source, input=model_input, arm=arm
        )
    )


def requeue(attempt_id: int) -> bool:
    """submitting -> queued for an attempt whose create was never called (no input recorded).

    Nothing was sent, so nothing was paid: the same attempt is submitted again.
    """
    with transaction.atomic():
        won = Attempt.objects.filter(
            pk=attempt_id, state=S.SUBMITTING, prediction_id__isnull=True, input__isnull=True
        ).update(state=S.QUEUED, submitting_at=None)
        if won:
            ledger.settle(attempt_id, None)  # the next claim reserves again
    if won:
        _log_change(attempt_id, S.QUEUED)
        enqueue("submit_attempt", attempt_id)
    return bool(won)


def refused(
    attempt_id: int,
    reason: str,
    *,
    retry_at: datetime,
    claimed_at: datetime | None = None,
    now: datetime | None = None,
) -> bool:
    """submitting -> queued again, due at `retry_at`: the create was refused or put off, and nothing exists
    at Replicate for this claim (docs/architecture.md#refused-creates).

    The same attempt tries again: a refusal costs nothing, so it never uses up the job's paid attempts
    (STAGING_MAX_ATTEMPTS); refusals are bounded by the attempt's deadline, kept from its first claim.
    The recorded input is cleared, so a reconcile can never mistake this claim for one whose create may
    have happened; `reason` stays in `error` while it waits. `claimed_at` pins the claim the caller
    examined (a reconcile must not requeue a newer claim). When `retry_at` is not before the deadline the
    attempt fails now, permanently, saying so. Returns True when the attempt was requeued.
    """
    now = now or timezone.now()
    mine = Attempt.objects.filter(pk=attempt_id, state=S.SUBMITTING, prediction_id__isnull=True)
    if claimed_at is not None:
        mine = mine.filter(submitting_at=claimed_at)
    with transaction.atomic():
        won = mine.filter(Q(deadline__isnull=True) | Q(deadline__gt=retry_at)).update(
            state=S.QUEUED, next_retry_at=retry_at, input=None, submitting_at=None, error=reason, error_class=""
        )
        if won:
            ledger.settle(attempt_id, None)  # nothing ran: the reservation is released until the next claim
            enqueue_at("submit_attempt", attempt_id, at=retry_at)
    if won:
        _log_change(attempt_id, S.QUEUED, retry_at=retry_at.isoformat(), reason=reason)
        return True
    if mine.exists():
        fail(attempt_id, refused_until_deadline_message(reason), PERMANENT, now=now)
    return False


def refused_until_deadline_message(reason: str) -> str:
    """Why an attempt whose create was refused or put off until its deadline ended, for the person who asked."""
    minutes = settings.STAGING_ATTEMPT_DEADLINE_SECONDS / 60
    return (
        f"The prediction could not be created within the attempt's {minutes:g} minutes "
        f"(last answer: {reason.removesuffix('; retrying later.').rstrip('.')}). "
        "No prediction ran and nothing was charged; retry the job when Replicate accepts work again."
    )


class Adoption(Enum):
    ADOPTED = "adopted"  # the prediction is now this attempt's
    ALREADY = "already"  # it was already recorded on this attempt
    ORPHAN = "orphan"  # the attempt ended (or has another prediction): nobody will use this one
    CLASH = "clash"  # the prediction is recorded on another attempt


def adopt(attempt_id: int, prediction_id: str, *, now: datetime | None = None) -> Adoption:
    """Record that the prediction belongs to the attempt (after create, by webhook, or by reconcile)."""
    now = now or timezone.now()
    try:
        with transaction.atomic():  # a savepoint: a clash must not break the caller's transaction
            won = Attempt.objects.filter(pk=attempt_id, state=S.SUBMITTING, prediction_id__isnull=True).update(
                prediction_id=prediction_id, state=S.SUBMITTED, submitted_at=now, checked_at=now, error=""
            )
    except IntegrityError:
        logger.error("Prediction %s is recorded on another attempt; not adopting it for %s", prediction_id, attempt_id)
        return Adoption.CLASH
    if won:
        _log_change(attempt_id, S.SUBMITTED)
        return Adoption.ADOPTED
    current = Attempt.objects.filter(pk=attempt_id).values_list("prediction_id", flat=True).first()
    return Adoption.ALREADY if current == prediction_id else Adoption.ORPHAN


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
            _log_change(attempt.pk, S.CANCELED)
    elif target == S.COLLECTING:
        won = Attempt.objects.filter(pk=attempt.pk, state__in=states_before(S.COLLECTING)).update(
            state=S.COLLECTING, output=prediction.output, **common
        )
        if won:
            _log_change(attempt.pk, S.COLLECTING)
            if prediction.output is None and prediction.data_removed:
                fail(attempt.pk, DATA_REMOVED_MESSAGE, PERMANENT, now=now)
            else:
                enqueue("collect_outputs", attempt.pk)
    else:
        won = Attempt.objects.filter(pk=attempt.pk, state__in=states_before(target)).update(state=target, **common)
        if won:
            _log_change(attempt.pk, target)
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
        _log_change(attempt_id, S.SUCCEEDED)
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
        _log_change(attempt_id, S.CANCELED)
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
    _log_change(attempt_id, S.FAILED, error_class=error_class, error=storage.redact_signatures(message))
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
