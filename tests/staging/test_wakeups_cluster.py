"""With a REAL `qcluster`: a retry or a poll due in seconds starts in seconds, not at a schedule tick.

The schedules are deleted first, so the minute's ticks (`retry_due`, `poll_in_flight`) cannot be what
starts the work: only the delayed tasks of `queue.enqueue_at` can (docs/architecture.md#wake-ups-on-time).
"""

from __future__ import annotations

import pytest
from django_q.models import Schedule

from staging import services
from staging.models import Attempt, StagingJob
from tests.fixtures.photos import upload
from tests.fixtures.waiting import wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.django_db(transaction=True)]


def _succeeded(job: StagingJob) -> bool:
    return StagingJob.objects.get(pk=job.pk).status == "succeeded"


def test_a_retry_due_in_two_seconds_starts_well_before_a_minute(emulator, qcluster) -> None:
    Schedule.objects.all().delete()
    emulator.set_faults(create_429=1, throttle_reset_seconds=2)  # "Your rate limit resets in ~2s."
    qcluster.start()
    job = services.create_job(upload(), "flux-kontext-pro")
    assert wait_until(lambda: _succeeded(job), timeout=45, step=0.1), qcluster.logs()
    [attempt] = Attempt.objects.filter(job=job)  # the refused create was sent again by the same attempt
    assert emulator.counters()["faults_injected"].get("create_429") == 1
    assert emulator.creates_for_token(attempt.token) == 1
    started_after_due = (attempt.submitted_at - attempt.next_retry_at).total_seconds()
    print(f"retry due at +2 s was sent {started_after_due:.2f} s after it was due")  # shown with -s
    assert 0 <= started_after_due < 15, started_after_due  # seconds, not the next minute's tick


def test_a_poll_due_in_seconds_runs_in_seconds_without_webhooks(emulator, qcluster) -> None:
    Schedule.objects.all().delete()
    emulator.set_faults(latency=1.0)
    qcluster.env["STAGING_PUBLIC_URL"] = ""  # polling mode: only reads tell the worker a prediction finished
    qcluster.start()
    job = services.create_job(upload(), "qwen-image-edit")
    assert wait_until(lambda: _succeeded(job), timeout=45, step=0.1), qcluster.logs()
    [attempt] = Attempt.objects.filter(job=job)
    assert attempt.replicate_status == "succeeded"
    took = (attempt.finished_at - attempt.submitted_at).total_seconds()
    print(f"a 1 s prediction, polled: finished {took:.2f} s after its create")  # shown with -s
    assert took < 20
