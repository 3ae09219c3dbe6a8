"""Writes about an attempt's prediction: submit it (claim, build the input, create the one prediction),
and take in news about it (its create's answer, a webhook, a poll, a reconcile).

State changes themselves are the compare-and-set transitions of `transitions`; this module decides
which one to call and does what a transition may not: calling Replicate (create, and cancel a
prediction nobody will use). An attempt creates at most one prediction: only the winner of
`transitions.claim` calls create, after `transitions.record_input` confirmed the claim still holds; a
create whose answer was lost is reconciled (`reconcile`) before anything new is created
(docs/architecture.md#never-pay-twice).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from pydantic import ValidationError

from models_config.registry import get_spec
from models_config.schemas import PromptError, check_prompt, describe_errors

from .. import gateway, pacer, selectors, spend, storage, transitions
from ..errors import PERMANENT, GatewayError, ReplicateNotConfigured, clamp_wait
from ..models import Arm, Attempt, ConfigSource, RefusedCreates
from ..predictions import Prediction
from ..queue import enqueue, enqueue_at
from ..transitions import Adoption

logger = logging.getLogger(__name__)

S = Attempt.State


# --- Submitting ----------------------------------------------------------------------------------


def submit_attempt(attempt_id: int) -> None:
    """Claim the attempt, build its input, create its one prediction and save the id at once.

    Safe to run any number of times, concurrently: losers of the claim return without a call. The create
    waits for a slot of the shared pacer (STAGING_CREATE_RATE); a create Replicate refused, or a slot too
    far off to sleep for, puts the same attempt back in the queue for later
    (docs/architecture.md#refused-creates).
    """
    attempt = Attempt.objects.select_related("job").filter(pk=attempt_id, state=S.QUEUED).first()
    if attempt is None:
        return  # already claimed, held or ended: nothing to do
    job = attempt.job
    claimed_at = timezone.now()
    # The claim reserves the estimate against the spend caps, or holds the attempt (docs/architecture.md#spend-caps).
    budget = transitions.Budget(job.model_slug, spend.estimate_for(job))
    if not transitions.claim(attempt_id, now=claimed_at, budget=budget):
        return
    # Then the slot: an attempt put off for one is back in the queue after a few queries (its reservation
    # released), and a first try (no `next_retry_at` yet) lines up behind those already waiting
    # (docs/architecture.md#pacing-creates).
    slot = pacer.take_create_slot(behind_line=attempt.next_retry_at is None)
    if not slot.granted:
        reason = f"Waiting for a create slot (STAGING_CREATE_RATE={settings.STAGING_CREATE_RATE})."
        transitions.refused(attempt_id, reason, retry_at=slot.retry_at, claimed_at=claimed_at)
        return
    spec = get_spec(job.model_slug)
    try:
        image_url = storage.image_url_for_replicate(job.sent_photo, storage.content_type_of(job.sent_photo.name))
        resolved = selectors.resolve_input(job, image_url, version_id=attempt.pinned_version_id)
        check_prompt(resolved.input["prompt"], settings.STAGING_MAX_PROMPT_CHARS)
    except ValidationError as exc:  # e.g. an override stored before today's rules
        message = (
            f"The configuration for {job.model_slug} is invalid: {describe_errors(exc.errors())}. "
            "Reprocess the job with a corrected config override (or {} to use the active config)."
        )
        transitions.fail(attempt_id, message, PERMANENT)
        return
    except PromptError as exc:  # a template saved under a larger STAGING_MAX_PROMPT_CHARS
        transitions.fail(attempt_id, f"The prompt for this job cannot be sent: {exc}", PERMANENT)
        return
    except ReplicateNotConfigured as exc:
        transitions.fail(attempt_id, str(exc), PERMANENT)
        return
    except GatewayError as exc:  # the Files API upload
        _not_created(attempt_id, exc, claimed_at)
        return

    pacer.wait_for(slot)

    source = ConfigSource.OVERRIDE if job.config_override else ConfigSource(resolved.active.source)
    recorded = transitions.record_input(
        attempt_id,
        version_id=resolved.active.version_id,
        config=resolved.config.model_dump(mode="json"),
        source=source,
        model_input=resolved.input,
        arm=Arm(resolved.active.arm),
    )
    if not recorded:
        logger.info("Attempt %s ended before its create; nothing sent", attempt_id)
        return
    webhook = gateway.webhook_url_for(attempt)
    try:
        prediction = gateway.create_prediction(spec.ref, resolved.input, webhook)
    except GatewayError as exc:
        if exc.ambiguous:
            # The prediction may exist: look for it (reconcile) instead of creating again.
            logger.warning("Create for attempt %s may have happened (%s); reconciling", attempt_id, exc)
            enqueue("reconcile_attempt", attempt_id)
            return
        if exc.refused:
            _count_refusal(job.model_slug, exc.status)
        _not_created(attempt_id, exc, claimed_at)
        return
    adopted = adopt_prediction(attempt_id, prediction)
    if webhook is None and adopted is not None and adopted.state in Attempt.IN_FLIGHT:
        # Polling mode: the first read of this prediction is due in seconds (docs/architecture.md#wake-ups-on-time).
        due = timezone.now() + timedelta(seconds=clamp_wait(settings.STAGING_POLL_INTERVAL_SECONDS))
        enqueue_at("poll_attempt", attempt_id, at=due)


def refusal_wait(exc: GatewayError) -> float:
    """Seconds before a refused request is tried again: the wait a 429 names, else STAGING_RETRY_BASE_SECONDS;
    clamped (`clamp_wait`)."""
    return clamp_wait(exc.retry_after if exc.retry_after is not None else settings.STAGING_RETRY_BASE_SECONDS)


def _not_created(attempt_id: int, exc: GatewayError, claimed_at: datetime) -> None:
    """Replicate turned a request of the submit away, so no prediction exists: a refusal (429, 5xx, never
    connected) puts the same attempt back in the queue, unpaid; a permanent answer fails the attempt."""
    if exc.refused:
        retry_at = timezone.now() + timedelta(seconds=refusal_wait(exc))
        transitions.refused(attempt_id, exc.message, retry_at=retry_at, claimed_at=claimed_at)
    else:
        transitions.fail(attempt_id, exc.message, exc.error_class)


def _count_refusal(slug: str, status: int | None) -> None:
    """One more refused create of `slug` with `status` (0: no answer), for `/metrics` (`RefusedCreates`)."""
    key = {"model_slug": slug, "status": status or 0}
    if RefusedCreates.objects.filter(**key).update(count=F("count") + 1):
        return
    try:
        with transaction.atomic():
            RefusedCreates.objects.create(**key, count=1)
    except IntegrityError:  # another worker made the row first
        RefusedCreates.objects.filter(**key).update(count=F("count") + 1)


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
