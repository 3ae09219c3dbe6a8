"""Every fault kind ends in the right terminal state with a message a person can act on."""

from __future__ import annotations

import pytest
from django.utils import timezone

from replicate_emulator import Emulator
from staging import services, sweeps
from staging.emulation import emulator_settings
from tests.fixtures.photos import upload
from tests.fixtures.pipeline import attempts, drive
from tests.fixtures.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_429_waits_the_named_time_then_succeeds(pipeline, make_job, monkeypatch):
    pipeline.set_faults(create_429=1, throttle_reset_seconds=1)
    before = timezone.now()
    job = make_job()
    [attempt] = attempts(job)  # a refused create is retried within the same attempt
    assert attempt.state == "queued" and "rate limit" in attempt.error
    assert (attempt.next_retry_at - before).total_seconds() >= 0.9  # honours "~1s"
    assert sweeps.retry_due() == 0  # not due yet
    real_now, wait = timezone.now, attempt.next_retry_at - timezone.now()
    monkeypatch.setattr(timezone, "now", lambda: real_now() + wait)  # the clock moves on to the named time
    assert drive(job) == "succeeded"
    assert len(attempts(job)) == 1
    assert pipeline.counters()["creates_total"] == 1  # the throttled request created nothing


@pytest.mark.parametrize("fault", ["create_500", "create_503"])
def test_server_errors_are_retried(fault, pipeline, make_job):
    pipeline.set_faults(**{fault: 1})
    job = make_job("qwen-image-edit")
    [attempt] = attempts(job)
    assert attempt.state == "queued" and "server error" in attempt.error
    assert drive(job) == "succeeded"
    [attempt] = attempts(job)  # the same attempt, sent again: a refused create is no paid attempt
    assert attempt.state == "succeeded" and attempt.error == ""
    assert pipeline.counters()["creates_total"] == 1


@pytest.mark.parametrize(
    "error",
    [
        "Director: unexpected error handling prediction (E6716)",
        "Director: unexpected error handling prediction (E9243)",
        "Prediction interrupted; please retry (code: PA)",
    ],
)
def test_platform_failures_are_retried_with_a_new_prediction(error, pipeline, make_job):
    pipeline.set_faults(fail_predictions=1, fail_error=error)
    job = make_job("seedream-4")
    assert drive(job) == "succeeded"
    first, second = attempts(job)
    assert first.state == "failed" and first.error_class == "transient" and error in first.error
    assert first.prediction_id != second.prediction_id
    assert pipeline.counters()["creates_total"] == 2


def test_moderation_fails_permanently_without_retry(pipeline, make_job):
    pipeline.set_faults(moderate=1)
    job = make_job()
    assert drive(job) == "failed"
    [attempt] = attempts(job)
    assert attempt.error_class == "permanent"
    assert "flagged" in attempt.error and "different photo" in attempt.error


def test_unknown_prediction_error_is_permanent(pipeline, make_job):
    pipeline.set_faults(fail_predictions=1, fail_error="CUDA out of memory")
    job = make_job()
    assert drive(job) == "failed"
    [attempt] = attempts(job)
    assert attempt.error_class == "permanent" and "CUDA out of memory" in attempt.error


def test_retries_are_bounded(pipeline, make_job, settings):
    settings.STAGING_MAX_ATTEMPTS = 2
    pipeline.set_faults(fail_predictions=5)
    job = make_job()
    assert drive(job) == "failed"
    assert len(attempts(job)) == 2
    assert "Gave up after 2 attempt(s)" in attempts(job)[-1].error
    assert pipeline.counters()["creates_total"] == 2


def test_lost_webhooks_are_caught_by_the_poller(webhook_pipeline, make_job, settings):
    webhook_pipeline.set_faults(webhook_lost=10)
    job = make_job()
    [attempt] = attempts(job)
    assert wait_until(lambda: webhook_pipeline.get_prediction(attempt.prediction_id)["status"] == "succeeded", 5)
    assert webhook_pipeline.wait_for_webhooks()  # every message it had to send was sent or lost by now
    job.refresh_from_db()
    assert job.status == "running"  # no webhook came
    settings.STAGING_POLL_AFTER_SECONDS = 0
    assert drive(job) == "succeeded"


def test_outputs_removed_before_collection_fail_with_a_clear_message(make_job):
    with Emulator(api_token="r8_emulator_test", latency=0.05, retention_seconds=0.2) as emu, emulator_settings(emu):
        job = make_job()
        [attempt] = attempts(job)
        assert wait_until(lambda: emu.get_prediction(attempt.prediction_id)["data_removed"], 5)
        assert drive(job) == "failed"
        attempt.refresh_from_db()
        assert attempt.error_class == "permanent" and "data_removed" in attempt.error
        assert "Retry the job" in attempt.error


def test_deadline_cancels_at_replicate_and_fails(pipeline, make_job, settings):
    pipeline.set_faults(latency=5)
    settings.STAGING_ATTEMPT_DEADLINE_SECONDS = 0
    job = make_job()
    [attempt] = attempts(job)
    assert sweeps.enforce_deadlines() == 1
    attempt.refresh_from_db()
    assert attempt.state == "failed" and "did not finish" in attempt.error
    assert wait_until(lambda: pipeline.get_prediction(attempt.prediction_id)["status"] == "canceled", 3)
    assert job.status == "failed"


def test_cancel_job_cancels_at_replicate(pipeline, make_job):
    pipeline.set_faults(latency=5)
    job = make_job()
    attempt = services.cancel_job(job.pk)
    assert attempt.state == "canceled"
    assert wait_until(lambda: pipeline.get_prediction(attempt.prediction_id)["status"] == "canceled", 3)
    sweeps.poll_in_flight()
    job.refresh_from_db()
    assert job.status == "canceled"


def test_retry_job_adds_an_attempt_that_succeeds(pipeline, make_job):
    pipeline.set_faults(moderate=1)
    job = make_job()
    assert drive(job) == "failed"
    with pytest.raises(Exception, match="still"):
        pipeline.set_faults(latency=5)
        running = make_job()
        services.retry_job(running.pk)
    pipeline.set_faults(latency=0.05)
    attempt = services.retry_job(job.pk)
    assert attempt.number == 2
    assert drive(job) == "succeeded"


def test_missing_token_refuses_with_both_ways_forward(pipeline, settings):
    settings.REPLICATE_API_TOKEN = ""
    from staging.errors import ReplicateNotConfigured
    from staging.models import StagingJob

    with pytest.raises(ReplicateNotConfigured) as info:
        services.create_job(upload(), "flux-kontext-pro")
    assert "REPLICATE_API_TOKEN" in str(info.value) and "emulator" in str(info.value)
    assert not StagingJob.objects.exists()
