"""Every wait is clamped (issue 7 item 9), and a wait that ends in seconds is woken in seconds.

An absurd wait named by Replicate ("~1000000000000000s", a huge `Retry-After`) becomes
STAGING_MAX_RETRY_AFTER_SECONDS, never an `OverflowError`; a due retry or poll is a delayed queue task
(`queue.enqueue_at`), pulled by the cluster when due rather than at the next minute's tick.
"""

from __future__ import annotations

import math
from datetime import timedelta
from http.server import BaseHTTPRequestHandler

import pytest
from django.db import transaction
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import OrmQ

from staging import queue, services, sweeps, transitions
from staging.errors import clamp_wait, classify_http_status, parse_retry_after
from staging.gateway import get_prediction
from staging.models import Attempt, StagingJob
from tests.fixtures.loopback import loopback_server
from tests.fixtures.photos import upload
from tests.fixtures.pipeline import attempts

S = Attempt.State
HUGE = "1000000000000000"


@pytest.fixture
def max_wait(settings) -> float:
    settings.STAGING_MAX_RETRY_AFTER_SECONDS = 120
    return 120.0


@pytest.mark.parametrize(
    "seconds, clamped",
    [(None, 0.0), (-5, 0.0), (math.nan, 0.0), (0, 0.0), (30, 30.0), (1e15, 120.0), (math.inf, 120.0), (10**400, 120.0)],
)
def test_clamp_wait(seconds, clamped, max_wait):
    assert clamp_wait(seconds) == clamped


def test_named_waits_are_clamped(max_wait):
    assert parse_retry_after(f"Request was throttled. Your rate limit resets in ~{HUGE}s.") == max_wait
    assert parse_retry_after(f"resets in ~{'9' * 400}s") == max_wait  # past float's range: inf, then clamped
    assert parse_retry_after("whatever", HUGE) == max_wait
    assert parse_retry_after("whatever", "inf") == max_wait
    assert parse_retry_after("whatever", "nan") == 0.0
    assert parse_retry_after("resets in ~30s") == 30.0
    error = classify_http_status(429, f"Your rate limit resets in ~{HUGE}s.")
    assert error.retry_after == max_wait and error.refused


def test_backoff_is_clamped_for_any_attempt_number(settings, max_wait):
    settings.STAGING_RETRY_MAX_SECONDS = 10**9
    for number in (1, 40, 2000, 10**6):
        assert 0 <= transitions.backoff_seconds(number, None) <= max_wait
    assert transitions.backoff_seconds(1, 1e300) == max_wait


@pytest.mark.django_db(transaction=True)
def test_an_absurd_wait_in_fail_schedules_the_next_attempt_at_the_maximum(max_wait):
    job = StagingJob.objects.create(photo="staging/originals/x/original.jpg", model_slug="flux-kontext-pro")
    attempt = Attempt.objects.create(job=job, number=1, state=S.PROCESSING, prediction_id="p1")
    now = timezone.now()
    assert transitions.fail(attempt.pk, "throttled", "transient", retry_after=1e15, now=now)
    assert Attempt.objects.get(job=job, number=2).next_retry_at == now + timedelta(seconds=max_wait)


def test_a_huge_retry_after_on_a_read_is_not_slept_on(settings):
    """The client retries a GET answered 429 after sleeping for the `Retry-After` it names; the gateway's
    transport clamps it (here to 0 s), so the read ends instead of sleeping for ever or overflowing."""
    settings.STAGING_MAX_RETRY_AFTER_SECONDS = 0
    settings.REPLICATE_API_TOKEN = "r8_test"
    hits: list[str] = []

    class Throttled(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            body = b'{"title": "Too Many Requests", "detail": "throttled", "status": 429}'
            self.send_response(429)
            self.send_header("Retry-After", HUGE)
            self.send_header("Content-Type", "application/problem+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with loopback_server(Throttled) as base:
        settings.REPLICATE_BASE_URL = base
        with pytest.raises(Exception) as info:
            get_prediction("p1")
    assert "rate limit" in str(info.value) and not isinstance(info.value, OverflowError)
    assert len(hits) > 1  # the client's retries ran, each after a clamped (zero) wait


# --- delayed tasks --------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_enqueue_at_writes_a_task_no_cluster_pulls_before_it_is_due(monkeypatch):
    monkeypatch.setattr(Conf, "SYNC", False)
    due = timezone.now() + timedelta(seconds=2)
    with transaction.atomic():
        queue.enqueue_at("submit_attempt", 42, at=due)
        assert not OrmQ.objects.exists()  # only once the transaction commits
    [row] = OrmQ.objects.all()
    assert row.lock == due and row.task["func"] == "staging.tasks.submit_attempt" and row.task["args"] == (42,)
    assert not queue.NotBefore(due).dequeue()  # not handed out before it is due
    real_now = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: real_now() + timedelta(seconds=3))
    assert [pk for pk, _ in queue.NotBefore(due).dequeue()] == [row.pk]  # handed out once due


@pytest.mark.django_db(transaction=True)
def test_enqueue_at_queues_nothing_in_sync_mode(monkeypatch):
    monkeypatch.setattr(Conf, "SYNC", True)  # tests and `stage --wait` start due work themselves
    queue.enqueue_at("submit_attempt", 42, at=timezone.now())
    assert not OrmQ.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_due_poll_reads_the_prediction_and_chains_the_next_while_it_runs(pipeline, settings, monkeypatch):
    pipeline.set_faults(latency=600)
    settings.STAGING_POLL_INTERVAL_SECONDS = 3
    job = services.create_job(upload(), "flux-kontext-pro")
    [attempt] = attempts(job)
    assert attempt.state in Attempt.IN_FLIGHT
    chained: list[tuple[str, tuple[int, ...], object]] = []
    monkeypatch.setattr(sweeps, "enqueue_at", lambda task, *args, at: chained.append((task, args, at)))
    now = attempt.checked_at + timedelta(seconds=3)
    assert sweeps.poll_attempt(attempt.pk, now=now) == sweeps.Step.POLL
    assert chained == [("poll_attempt", (attempt.pk,), now + timedelta(seconds=3))]
    heard = Attempt.objects.get(pk=attempt.pk).checked_at
    assert heard > attempt.checked_at  # read
    # Read a moment ago (by the scheduled poller, say): not read again, but the chain goes on.
    assert sweeps.poll_attempt(attempt.pk, now=heard + timedelta(seconds=1)) is None
    assert Attempt.objects.get(pk=attempt.pk).checked_at == heard
    assert len(chained) == 2
    Attempt.objects.filter(pk=attempt.pk).update(state=S.CANCELED)
    assert sweeps.poll_attempt(attempt.pk, now=heard + timedelta(seconds=6)) is None
    assert len(chained) == 2  # a finished attempt ends the chain
