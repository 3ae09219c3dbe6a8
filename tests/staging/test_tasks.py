"""Tasks delegate to the services (the schedules that start them: tests/staging/test_schedules.py)."""

from __future__ import annotations

import pytest

from staging import tasks

from .conftest import attempts


@pytest.mark.django_db(transaction=True)
def test_tasks_drive_a_job_to_success(make_job):
    job = make_job("flux-kontext-max")
    for _ in range(100):
        tasks.poll_in_flight()
        tasks.retry_due()
        tasks.enforce_deadlines()
        if job.status == "succeeded":
            break
        __import__("time").sleep(0.05)
    assert job.status == "succeeded"
    assert attempts(job)[0].images.count() == 1


@pytest.mark.django_db(transaction=True)
def test_without_webhooks_the_scheduled_poll_keeps_polling_until_nothing_is_in_flight(make_job, pipeline, settings):
    import time

    settings.STAGING_POLL_INTERVAL_SECONDS = 0.1
    settings.STAGING_POLL_WINDOW_SECONDS = 20
    pipeline.set_faults(latency=0.8)
    job = make_job("seedream-4")
    assert job.status == "running"
    started = time.monotonic()
    counts = tasks.poll_in_flight()  # one scheduled run, as django-q would start it
    elapsed = time.monotonic() - started
    job.refresh_from_db()
    assert job.status == "succeeded"
    assert counts["polled"] >= 2  # it looked more than once within the one run
    assert elapsed < 10  # and returned when nothing was in flight, well before the window


@pytest.mark.django_db(transaction=True)
def test_with_webhooks_the_scheduled_poll_is_a_single_pass(make_job, pipeline, settings):
    settings.STAGING_PUBLIC_URL = "http://127.0.0.1:9"  # webhooks "configured" (never delivered here)
    settings.STAGING_POLL_AFTER_SECONDS = 0
    settings.STAGING_POLL_INTERVAL_SECONDS = 0.1
    settings.STAGING_POLL_WINDOW_SECONDS = 20
    pipeline.set_faults(latency=2.0)
    make_job("flux-kontext-pro")
    counts = tasks.poll_in_flight()
    assert counts["polled"] == 1  # one look at the late prediction, no loop while it runs
