"""The transitions up to a prediction: claim an attempt, hold and resume it, record its input, put it back in
the queue when nothing was created, and adopt its prediction (docs/architecture.md#never-pay-twice).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from .. import ledger
from ..errors import PERMANENT
from ..models import Arm, Attempt, ConfigSource
from ..queue import enqueue, enqueue_at
from .base import log_change, logger
from .completion import fail

S = Attempt.State


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
        log_change(attempt_id, S.HELD, reason=held)
        return False
    if won:
        log_change(attempt_id, S.SUBMITTING)
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
        log_change(attempt_id, S.QUEUED, resumed=True)
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
        log_change(attempt_id, S.QUEUED)
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
        log_change(attempt_id, S.QUEUED, retry_at=retry_at.isoformat(), reason=reason)
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
        log_change(attempt_id, S.SUBMITTED)
        return Adoption.ADOPTED
    current = Attempt.objects.filter(pk=attempt_id).values_list("prediction_id", flat=True).first()
    return Adoption.ALREADY if current == prediction_id else Adoption.ORPHAN
