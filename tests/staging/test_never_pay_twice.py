"""An attempt creates at most one prediction, whatever is delivered twice, crashes or races."""

from __future__ import annotations

import io
import threading

import pytest
from django.db import connection
from django_q.conf import Conf

from models_config.registry import get_spec
from staging import gateway, reconcile, services, sweeps, transitions
from staging.models import Attempt, StagedImage, WebhookDelivery
from tests.fixtures.photos import image_bytes, upload
from tests.fixtures.pipeline import attempts, drive
from tests.fixtures.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def _queued_job(pipeline, monkeypatch, model="flux-kontext-pro"):
    """A job whose attempt 1 is queued but not yet submitted (the task sits in the ORM queue)."""
    monkeypatch.setattr(Conf, "SYNC", False)
    job = services.create_job(upload(), model)
    monkeypatch.setattr(Conf, "SYNC", True)
    attempt = attempts(job)[0]
    assert attempt.state == "queued"
    return job, attempt


def test_concurrent_submits_create_one_prediction(pipeline, monkeypatch):
    job, attempt = _queued_job(pipeline, monkeypatch)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def submit() -> None:
        try:
            barrier.wait()
            services.submit_attempt(attempt.pk)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=submit) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert not errors
    assert pipeline.counters()["creates_total"] == 1
    assert drive(job) == "succeeded"
    assert pipeline.counters()["creates_total"] == 1
    assert len(attempts(job)) == 1


def test_duplicate_task_delivery_after_submit_is_a_no_op(pipeline, make_job):
    job = make_job()
    attempt = attempts(job)[0]
    services.submit_attempt(attempt.pk)
    services.submit_attempt(attempt.pk)
    assert drive(job) == "succeeded"
    services.submit_attempt(attempt.pk)
    assert pipeline.counters()["creates_total"] == 1


def test_dropped_create_is_adopted_with_webhooks(webhook_pipeline, make_job):
    webhook_pipeline.set_faults(drop_after_create=1)
    job = make_job("qwen-image-edit")
    assert wait_until(lambda: job.status == "succeeded" if not job.refresh_from_db() else False, 10)
    [attempt] = attempts(job)
    assert webhook_pipeline.creates_for_token(attempt.token) == 1
    assert webhook_pipeline.counters()["creates_total"] == 1


def test_dropped_create_is_adopted_by_input_when_polling(pipeline, make_job):
    pipeline.set_faults(drop_after_create=1)
    job = make_job("seedream-4")
    assert drive(job) == "succeeded"
    assert len(attempts(job)) == 1
    assert pipeline.counters()["creates_total"] == 1


def _claimed_with_input(job) -> Attempt:
    """Simulate a worker that claimed and recorded the input, then crashed around the create."""
    attempt = attempts(job)[0]
    assert transitions.claim(attempt.pk)
    spec = get_spec(job.model_slug)
    image_url = gateway.upload_file(io.BytesIO(image_bytes()), "room.jpg", "image/jpeg")
    model_input = {"prompt": "stage it", "input_image": image_url}
    Attempt.objects.filter(pk=attempt.pk).update(input=model_input)
    attempt.refresh_from_db()
    return attempt, spec, model_input


def test_crash_after_create_is_reconciled_not_recreated(pipeline, monkeypatch, settings):
    job, _ = _queued_job(pipeline, monkeypatch)
    attempt, spec, model_input = _claimed_with_input(job)
    # The create reached Replicate (its webhook URL carries the token; nobody listens there), then the
    # worker died before saving the id.
    webhook = f"http://127.0.0.1:9/webhooks/replicate/?attempt={attempt.token}"
    created = gateway.create_prediction(spec.ref, model_input, webhook)
    settings.STAGING_RECONCILE_AFTER_SECONDS = 3600
    sweeps.poll_in_flight()
    attempt.refresh_from_db()
    assert attempt.state == "submitting" and attempt.prediction_id is None  # not overdue yet
    settings.STAGING_RECONCILE_AFTER_SECONDS = 0
    sweeps.poll_in_flight()
    attempt.refresh_from_db()
    assert attempt.prediction_id == created.id
    assert drive(job) == "succeeded"
    assert pipeline.creates_for_token(attempt.token) == 1
    assert pipeline.counters()["creates_total"] == 1
    assert len(attempts(job)) == 1


def test_crash_before_create_is_sent_again_after_the_safe_delay(pipeline, monkeypatch, settings):
    job, _ = _queued_job(pipeline, monkeypatch)
    attempt, _, _ = _claimed_with_input(job)
    settings.STAGING_RECONCILE_AFTER_SECONDS = 3600
    sweeps.poll_in_flight()
    attempt.refresh_from_db()
    assert attempt.state == "submitting"  # not yet: the create might still be in flight
    assert pipeline.counters()["creates_total"] == 0
    settings.STAGING_RECONCILE_AFTER_SECONDS = 0
    assert drive(job) == "succeeded"
    [again] = attempts(job)  # proven never created: the same attempt is sent again, no paid attempt used
    assert again.pk == attempt.pk and again.state == "succeeded"
    assert pipeline.counters()["creates_total"] == 1


def test_crash_before_input_recorded_requeues_the_same_attempt(pipeline, monkeypatch):
    job, attempt = _queued_job(pipeline, monkeypatch)
    assert transitions.claim(attempt.pk)
    assert drive(job) == "succeeded"
    assert len(attempts(job)) == 1
    assert pipeline.counters()["creates_total"] == 1


def test_webhook_duplicates_are_applied_once(webhook_pipeline, make_job):
    webhook_pipeline.set_faults(webhook_duplicate=1)
    job = make_job("qwen-image-edit-plus")
    assert wait_until(lambda: not job.refresh_from_db() and job.status == "succeeded", 10)
    webhook_pipeline.wait_for_webhooks(5)
    [attempt] = attempts(job)
    deliveries = WebhookDelivery.objects.filter(attempt=attempt)
    assert deliveries.count() == 1  # completed (the only event asked for), once, although sent twice
    assert webhook_pipeline.counters()["webhooks_sent"] >= 2
    assert StagedImage.objects.filter(attempt=attempt).count() == len(attempt.output)


def test_webhook_and_poller_racing(webhook_pipeline, make_job, settings):
    settings.STAGING_POLL_AFTER_SECONDS = 0
    jobs = [make_job("flux-kontext-pro") for _ in range(3)]

    def all_done() -> bool:
        sweeps.poll_in_flight()
        return all(not j.refresh_from_db() and j.status == "succeeded" for j in jobs)

    assert wait_until(all_done, 15)
    webhook_pipeline.wait_for_webhooks(5)
    for job in jobs:
        [attempt] = attempts(job)
        assert webhook_pipeline.creates_for_token(attempt.token) == 1
        assert StagedImage.objects.filter(attempt=attempt).count() == 1
    assert webhook_pipeline.counters()["creates_total"] == 3


def test_requeued_attempt_keeps_its_deadline(pipeline, monkeypatch, settings):
    job, attempt = _queued_job(pipeline, monkeypatch)
    assert transitions.claim(attempt.pk)
    first_deadline = Attempt.objects.get(pk=attempt.pk).deadline
    assert reconcile.reconcile_attempt(attempt.pk, final=True) == "requeued"
    attempt.refresh_from_db()
    assert attempt.deadline == first_deadline
    assert attempt.state == "succeeded" or drive(job) == "succeeded"
