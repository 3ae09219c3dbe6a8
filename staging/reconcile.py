"""Settling a create whose answer was lost: find the prediction it made, or prove there is none.

A create that timed out or lost its connection may still have created a prediction (and be billed).
Before anything new is created for such an attempt, Replicate's list of recent predictions is searched
for it (docs/architecture.md#never-pay-twice). Only reads Replicate; every change goes through
`transitions` (or `services.adopt_prediction`, which may cancel an orphan at Replicate).
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from models_config.registry import get_spec

from . import gateway, services, transitions
from .errors import GatewayError, ListTruncated
from .models import Attempt
from .predictions import Prediction

logger = logging.getLogger(__name__)
S = Attempt.State

# How far before the claim a listed prediction may have been created and still be this attempt's
# (clock skew between us and Replicate).
CLOCK_SKEW = timedelta(minutes=5)

LOST_MESSAGE = "The request creating the prediction was lost and Replicate lists no prediction for it; sending again."


def find_prediction_for(attempt: Attempt) -> Prediction | None:
    """Search Replicate's recent predictions for the one this attempt created, if any.

    A prediction matches when its webhook URL carries the attempt's token, or (polling mode, no
    webhook) when model and input equal the attempt's recorded input and no other attempt owns it.
    Pages are read newest first until predictions are older than the attempt's claim (less CLOCK_SKEW),
    however many newer ones a busy account has; `ListTruncated` when STAGING_RECONCILE_MAX_PAGES pages
    were read before that (then nothing is proven).
    """
    ref = get_spec(attempt.job.model_slug).ref
    oldest = (attempt.submitting_at or attempt.created_at) - CLOCK_SKEW
    for prediction in gateway.iter_recent_predictions():
        if prediction.created_at is not None and prediction.created_at < oldest:
            return None
        if prediction.webhook and gateway.attempt_token_from(prediction.webhook) == attempt.token:
            return prediction
        if (
            not prediction.webhook
            and prediction.model == ref
            and prediction.input == attempt.input
            and not Attempt.objects.filter(prediction_id=prediction.id).exclude(pk=attempt.pk).exists()
        ):
            return prediction
    return None


def is_final(attempt: Attempt, now: datetime | None = None) -> bool:
    """Whether the claim is older than any create request can take (STAGING_RECONCILE_AFTER_SECONDS):
    only then does "not listed" mean "never created"."""
    age = ((now or timezone.now()) - (attempt.submitting_at or attempt.created_at)).total_seconds()
    return age >= settings.STAGING_RECONCILE_AFTER_SECONDS


def reconcile_attempt(attempt_id: int, *, final: bool) -> str:
    """Settle an attempt stuck in `submitting` without a prediction id. Returns what was done.

    - input never recorded -> create was never called: back to queued (same attempt, no cost yet);
    - a matching prediction is listed -> adopt it (never create again);
    - the list could not be read back to the claim (an error, or more pages than
      STAGING_RECONCILE_MAX_PAGES) -> keep waiting: "not found" is proven only by a complete read;
    - nothing found and `final` -> "lost": nothing was created, so the same attempt goes back to the
      queue to be sent again (`transitions.refused`), without using up a paid attempt.
    """
    attempt = Attempt.objects.select_related("job").get(pk=attempt_id)
    if attempt.state != S.SUBMITTING or attempt.prediction_id:
        return "nothing"
    if attempt.input is None:
        if not final:
            return "waiting"
        transitions.requeue(attempt_id)
        return "requeued"
    try:
        prediction = find_prediction_for(attempt)
    except ListTruncated as exc:
        logger.warning("Reconcile of attempt %s is still waiting: %s", attempt_id, exc)
        return "waiting"
    except GatewayError as exc:
        logger.warning("Reconcile of attempt %s could not list predictions: %s", attempt_id, exc)
        return "error"
    if prediction is not None:
        logger.info("Attempt %s adopts prediction %s found by reconcile", attempt_id, prediction.id)
        with contextlib.suppress(GatewayError):  # the list may show less than a read (output, metrics)
            prediction = gateway.get_prediction(prediction.id)
        services.adopt_prediction(attempt_id, prediction)
        return "adopted"
    if not final:
        return "waiting"
    transitions.refused(attempt_id, LOST_MESSAGE, retry_at=timezone.now(), claimed_at=attempt.submitting_at)
    return "lost"
