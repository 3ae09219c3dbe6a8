"""The scheduled side of the pipeline: what moves an attempt on when no event does.

`next_step(attempt)` names, once, what an attempt needs next; `advance` performs it. The scheduled
ticks (poll in-flight predictions, reconcile stuck creates, restart stalled collections, start due
retries, enforce deadlines) pick candidates with `selectors` and call `advance`; so does the
in-process runner of `stage --wait` (`reprocessing.run_job`). Each function is safe to run at any
time, on any number of workers at once: the transitions underneath are compare-and-set.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from enum import StrEnum

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from . import collect, gateway, reconcile, selectors, services, transitions
from .errors import PERMANENT, GatewayError, clamp_wait
from .models import Attempt
from .queue import enqueue, enqueue_at

logger = logging.getLogger(__name__)
S = Attempt.State


class Step(StrEnum):
    """What an attempt needs next. SUBMIT and COLLECT are also the names of their queue tasks."""

    SUBMIT = "submit_attempt"
    RECONCILE = "reconcile_attempt"
    POLL = "poll"
    COLLECT = "collect_outputs"


def next_step(attempt: Attempt, now: datetime | None = None) -> Step | None:
    """The step the pipeline would run next for this attempt; None when it waits (or is finished)."""
    now = now or timezone.now()
    if attempt.state == S.QUEUED:
        return Step.SUBMIT if attempt.next_retry_at is None or attempt.next_retry_at <= now else None
    if attempt.state == S.SUBMITTING and attempt.prediction_id is None:
        return Step.RECONCILE
    if attempt.state in Attempt.IN_FLIGHT and attempt.prediction_id:
        return Step.POLL
    if attempt.state == S.COLLECTING:
        return Step.COLLECT
    return None


def advance(attempt: Attempt, *, now: datetime | None = None, inline: bool = False) -> Step | None:
    """Run the attempt's next step. Returns it (None: nothing to do now).

    A tick runs the quick reads (poll, reconcile) itself and queues a submit or a collection, which
    may take seconds, for a worker of its own (`inline=False`); the in-process runner runs all inline.
    """
    now = now or timezone.now()
    step = next_step(attempt, now)
    if step is None:
        return None
    if step in (Step.SUBMIT, Step.COLLECT) and not inline:
        enqueue(step.value, attempt.pk)
    elif step == Step.SUBMIT:
        services.submit_attempt(attempt.pk)
    elif step == Step.COLLECT:
        collect.collect_outputs(attempt.pk)
    elif step == Step.RECONCILE:
        reconcile.reconcile_attempt(attempt.pk, final=reconcile.is_final(attempt, now))
    else:
        try:
            services.apply_prediction_update(gateway.get_prediction(attempt.prediction_id), attempt=attempt)
        except GatewayError as exc:  # a failed read: the next tick reads again
            logger.warning("Poll of %s failed: %s", attempt.prediction_id, exc)
            return None
    return step


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
        if advance(attempt, now=now) == Step.POLL:
            counts["polled"] += 1

    stuck_before = now - timedelta(seconds=settings.STAGING_RECONCILE_AFTER_SECONDS)
    for attempt in selectors.stuck_submitting(stuck_before).select_related("job")[:batch]:
        advance(attempt, now=now)
        counts["reconciled"] += 1

    stale = now - timedelta(seconds=settings.STAGING_POLL_AFTER_SECONDS)
    for attempt in selectors.stalled_collecting(stale)[:batch]:
        if transitions.reclaim_collect(attempt.pk, silent_since=stale, now=now):
            advance(attempt, now=now)
            counts["collect_requeued"] += 1
    return counts


def poll_attempt(attempt_id: int, *, now: datetime | None = None) -> Step | None:
    """A due read of one in-flight prediction (polling mode), then the next one an interval later while it runs.

    Queued as a delayed task after the create (`services.submit_attempt`) and by itself, so a prediction
    that finishes in seconds is heard of in seconds, not at the next minute's tick
    (docs/architecture.md#wake-ups-on-time). A read that the scheduled poller made within the last half
    interval is not repeated; a finished attempt ends the chain.
    """
    now = now or timezone.now()
    attempt = Attempt.objects.filter(pk=attempt_id).first()
    if attempt is None or attempt.state not in Attempt.IN_FLIGHT:
        return None
    interval = clamp_wait(settings.STAGING_POLL_INTERVAL_SECONDS)
    step = None
    if attempt.checked_at is None or (now - attempt.checked_at).total_seconds() >= interval / 2:
        step = advance(attempt, now=now)
    if Attempt.objects.filter(pk=attempt_id, state__in=Attempt.IN_FLIGHT).exists():
        enqueue_at("poll_attempt", attempt_id, at=now + timedelta(seconds=interval))
    return step


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
    minutes = settings.STAGING_ATTEMPT_DEADLINE_SECONDS / 60
    message = f"The attempt did not finish within {minutes:g} minutes and was canceled. Retry the job."
    for attempt in selectors.past_deadline(now)[: settings.STAGING_POLL_BATCH]:
        reason = message
        if attempt.state == S.QUEUED and attempt.prediction_id is None and attempt.error:
            # Waiting to send a create that Replicate refused: say so, not "did not finish".
            reason = transitions.refused_until_deadline_message(attempt.error)
        if transitions.fail(attempt.pk, reason, PERMANENT, now=now):
            done += 1
            if attempt.prediction_id:
                gateway.cancel_quietly(attempt.prediction_id)
    return done


def retry_due(now: datetime | None = None) -> int:
    """Queue the submission of attempts whose backoff has passed, or whose enqueue was lost."""
    now = now or timezone.now()
    lost_before = now - timedelta(seconds=settings.STAGING_POLL_AFTER_SECONDS)
    due = Attempt.objects.filter(state=S.QUEUED).filter(
        Q(next_retry_at__lte=now) | Q(next_retry_at__isnull=True, created_at__lte=lost_before)
    )
    count = 0
    for attempt in due.order_by("next_retry_at", "pk")[: settings.STAGING_POLL_BATCH]:
        if advance(attempt, now=now) == Step.SUBMIT:
            count += 1
    return count
