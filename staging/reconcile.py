"""The scheduled side of the pipeline: poll, reconcile lost creates, enforce deadlines, start due retries.

Each function is safe to run at any time, on any number of workers at once: it only reads Replicate
and hands its findings to the compare-and-set transitions in `services`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django_q.tasks import async_task

from models_config.registry import get_spec

from . import gateway, selectors, services
from .errors import PERMANENT, TRANSIENT, GatewayError
from .models import Attempt

logger = logging.getLogger(__name__)
S = Attempt.State

# How far before the claim a listed prediction may have been created and still be this attempt's
# (clock skew between us and Replicate).
CLOCK_SKEW = timedelta(minutes=5)


def _token_of(prediction: dict[str, Any]) -> str:
    webhook = prediction.get("webhook") or ""
    return parse_qs(urlsplit(webhook).query).get("attempt", [""])[0] if webhook else ""


def find_prediction_for(attempt: Attempt) -> dict[str, Any] | None:
    """Search Replicate's recent predictions for the one this attempt created, if any.

    A prediction matches when its webhook URL carries the attempt's token, or (polling mode, no
    webhook) when model and input equal the attempt's recorded input and no other attempt owns it.
    Pages are read newest first until predictions are older than the attempt's claim.
    """
    ref = get_spec(attempt.job.model_slug).ref
    oldest = (attempt.submitting_at or attempt.created_at) - CLOCK_SKEW
    for prediction in gateway.iter_recent_predictions():
        created = parse_datetime(prediction.get("created_at") or "")
        if created is not None and created < oldest:
            return None
        if _token_of(prediction) == attempt.token:
            return prediction
        if (
            not prediction.get("webhook")
            and prediction.get("model") == ref
            and prediction.get("input") == attempt.input
            and not Attempt.objects.filter(prediction_id=prediction.get("id")).exclude(pk=attempt.pk).exists()
        ):
            return prediction
    return None


def reconcile_attempt(attempt_id: int, *, final: bool) -> str:
    """Settle an attempt stuck in `submitting` without a prediction id. Returns what was done.

    - input never recorded → create was never called: back to queued (same attempt, no cost yet);
    - a matching prediction is listed → adopt it (never create again);
    - nothing found and `final` (the claim is older than STAGING_RECONCILE_AFTER_SECONDS, longer than
      any create request can take) → fail transiently, which schedules a fresh attempt.
    """
    attempt = Attempt.objects.select_related("job").get(pk=attempt_id)
    if attempt.state != S.SUBMITTING or attempt.prediction_id:
        return "nothing"
    if attempt.input is None:
        if not final:
            return "waiting"
        requeued = Attempt.objects.filter(
            pk=attempt_id, state=S.SUBMITTING, prediction_id__isnull=True, input__isnull=True
        ).update(state=S.QUEUED, submitting_at=None)
        if requeued:
            async_task("staging.tasks.submit_attempt", attempt_id)
        return "requeued"
    try:
        prediction = find_prediction_for(attempt)
    except GatewayError as exc:
        logger.warning("Reconcile of attempt %s could not list predictions: %s", attempt_id, exc)
        return "error"
    if prediction is not None:
        logger.info("Attempt %s adopts prediction %s found by reconcile", attempt_id, prediction["id"])
        full = prediction
        with contextlib.suppress(GatewayError):
            full = gateway.get_prediction(prediction["id"])
        services.adopt_prediction(attempt_id, full)
        return "adopted"
    if not final:
        return "waiting"
    services.fail_attempt(
        attempt_id,
        "The request creating the prediction was lost and Replicate lists no prediction for it.",
        TRANSIENT,
    )
    return "lost"


def poll_in_flight(now: datetime | None = None) -> dict[str, int]:
    """One poller tick: read overdue predictions, reconcile stuck creates, restart stalled collections.

    With webhooks, only predictions silent for STAGING_POLL_AFTER_SECONDS are read (a lost or late
    webhook); without STAGING_PUBLIC_URL every in-flight prediction is read.
    """
    now = now or timezone.now()
    batch = settings.STAGING_POLL_BATCH
    after = timedelta(seconds=settings.STAGING_POLL_AFTER_SECONDS if settings.STAGING_PUBLIC_URL else 0)
    counts = {"polled": 0, "reconciled": 0, "collect_requeued": 0}

    for attempt in selectors.attempts_to_poll(now - after)[:batch]:
        try:
            prediction = gateway.get_prediction(attempt.prediction_id)
        except GatewayError as exc:
            logger.warning("Poll of %s failed: %s", attempt.prediction_id, exc)
            continue
        services.apply_prediction_update(prediction, attempt=attempt)
        counts["polled"] += 1

    stuck_before = now - timedelta(seconds=settings.STAGING_RECONCILE_AFTER_SECONDS)
    for attempt_id in selectors.stuck_submitting(stuck_before).values_list("pk", flat=True)[:batch]:
        reconcile_attempt(attempt_id, final=True)
        counts["reconciled"] += 1

    stale = now - timedelta(seconds=settings.STAGING_POLL_AFTER_SECONDS)
    for attempt_id in selectors.stalled_collecting(stale).values_list("pk", flat=True)[:batch]:
        if Attempt.objects.filter(pk=attempt_id, state=S.COLLECTING, checked_at__lte=stale).update(checked_at=now):
            async_task("staging.tasks.collect_outputs", attempt_id)
            counts["collect_requeued"] += 1
    return counts


def poll_while_in_flight(window: float, interval: float) -> dict[str, int]:
    """Poller ticks every `interval` seconds for up to `window` seconds, while anything is in flight.

    Without webhooks, polling is the only way to hear that a prediction finished, and django-q runs
    schedules at most once a minute: one tick a minute would add up to a minute to every job. So the
    scheduled task keeps polling while predictions are running, then returns (and frees its worker).
    """
    give_up_at = time.monotonic() + window
    totals = poll_in_flight()
    while time.monotonic() + interval < give_up_at:
        if not selectors.attempts_to_poll(timezone.now()).exists():
            break
        time.sleep(interval)
        for name, count in poll_in_flight().items():
            totals[name] = totals.get(name, 0) + count
    return totals


def enforce_deadlines(now: datetime | None = None) -> int:
    """Fail attempts past their deadline and cancel their predictions. Returns how many."""
    now = now or timezone.now()
    done = 0
    for attempt in selectors.past_deadline(now)[: settings.STAGING_POLL_BATCH]:
        minutes = settings.STAGING_ATTEMPT_DEADLINE_SECONDS / 60
        message = f"The attempt did not finish within {minutes:g} minutes and was canceled. Retry the job."
        if services.fail_attempt(attempt.pk, message, PERMANENT):
            done += 1
            if attempt.prediction_id:
                services._cancel_quietly(attempt.prediction_id)
    return done


def retry_due(now: datetime | None = None) -> int:
    """Queue the submission of attempts whose backoff has passed, or whose enqueue was lost."""
    now = now or timezone.now()
    lost_before = now - timedelta(seconds=settings.STAGING_POLL_AFTER_SECONDS)
    due = Attempt.objects.filter(state=S.QUEUED).filter(
        Q(next_retry_at__lte=now) | Q(next_retry_at__isnull=True, created_at__lte=lost_before)
    )
    ids = list(due.order_by("next_retry_at", "pk").values_list("pk", flat=True)[: settings.STAGING_POLL_BATCH])
    for attempt_id in ids:
        async_task("staging.tasks.submit_attempt", attempt_id)
    return len(ids)
