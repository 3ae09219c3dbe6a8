"""Tasks delegate to the services (the schedules that start them: tests/staging/test_schedules.py)."""

from __future__ import annotations

import threading
import time

import pytest

from staging import tasks
from tests.fixtures.pipeline import attempts
from tests.fixtures.waiting import wait_until


@pytest.mark.django_db(transaction=True)
def test_tasks_drive_a_job_to_success(make_job):
    job = make_job("flux-kontext-max")

    def succeeded() -> bool:
        tasks.poll_in_flight()
        tasks.retry_due()
        tasks.enforce_deadlines()
        return job.status == "succeeded"

    wait_until(succeeded)
    assert job.status == "succeeded"
    assert attempts(job)[0].images.count() == 1


@pytest.mark.django_db(transaction=True)
def test_without_webhooks_the_scheduled_poll_keeps_polling_until_nothing_is_in_flight(
    make_job, pipeline, settings, monkeypatch
):
    settings.STAGING_POLL_INTERVAL_SECONDS = 0.1
    settings.STAGING_POLL_WINDOW_SECONDS = 20
    pipeline.set_faults(latency=0.8)
    job = make_job("seedream-4")
    assert job.status == "running"
    naps = _naps_of_this_thread(monkeypatch)
    counts = tasks.poll_in_flight()  # one scheduled run, as django-q would start it
    job.refresh_from_db()
    assert job.status == "succeeded"
    assert counts["polled"] >= 2  # it looked more than once within the one run
    assert sum(naps) < 10  # and returned when nothing was in flight, well before the window


def _naps_of_this_thread(monkeypatch) -> list[float]:
    """The seconds of every `time.sleep` this thread takes from now on (the poller's waits between ticks):
    how long it kept going, counted by the poller's own clock rather than measured on the wall."""
    naps: list[float] = []
    real_sleep, me = time.sleep, threading.get_ident()

    def sleep(seconds: float) -> None:
        if threading.get_ident() == me:
            naps.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(time, "sleep", sleep)
    return naps


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
