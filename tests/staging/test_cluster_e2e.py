"""End to end with a REAL `manage.py qcluster` subprocess, the emulator and webhooks to the live server.

Proves the pipeline's promises where they can actually break: concurrent workers, duplicated queue
tasks and webhooks, and a worker killed with SIGKILL mid-flight. Every attempt creates exactly one
prediction (`emulator.creates_for_token(attempt.token) == 1`).
"""

from __future__ import annotations

import pytest
from django_q.tasks import async_task
from PIL import Image

from models_config.registry import REGISTRY
from staging import schedules, services
from staging.models import Attempt, StagingJob
from tests.fixtures.photos import upload
from tests.fixtures.waiting import wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.django_db(transaction=True)]


def _create(model: str) -> StagingJob:
    return services.create_job(upload(), model)


def _all_succeeded(jobs: list[StagingJob]) -> bool:
    return all(StagingJob.objects.get(pk=job.pk).status == "succeeded" for job in jobs)


def _assert_done_once_each(jobs: list[StagingJob], emulator, cluster) -> None:
    print("emulator counters:", emulator.counters())  # shown with -s
    statuses = {job.pk: StagingJob.objects.get(pk=job.pk).status for job in jobs}
    assert set(statuses.values()) == {"succeeded"}, (statuses, cluster.logs())
    for job in jobs:
        for attempt in Attempt.objects.filter(job=job):
            assert emulator.creates_for_token(attempt.token) == 1, (attempt, emulator.counters())
        attempt = job.attempts.get(state="succeeded")
        images = list(attempt.images.all())
        assert images, f"job {job.pk} has no stored outputs"
        for image in images:
            with Image.open(image.file.path) as decoded:
                decoded.load()
                assert decoded.size == (image.width, image.height)


def test_every_model_through_the_real_cluster(emulator, qcluster) -> None:
    jobs = [_create(slug) for slug in REGISTRY]
    qcluster.start()
    assert wait_until(lambda: _all_succeeded(jobs), timeout=60, step=0.25), qcluster.logs()
    _assert_done_once_each(jobs, emulator, qcluster)
    assert emulator.counters()["creates_total"] == len(jobs)
    # Webhooks did the work: every attempt heard from Replicate without the poller (which waits 60 s).
    assert all(a.replicate_status == "succeeded" for a in Attempt.objects.filter(job__in=jobs))


def test_duplicate_tasks_and_webhooks_never_pay_twice(emulator, qcluster) -> None:
    emulator.set_faults(webhook_duplicate=100)
    jobs = [_create("flux-kontext-pro"), _create("seedream-4")]
    for job in jobs:
        attempt = job.attempts.get()
        for _ in range(4):
            async_task("staging.tasks.submit_attempt", attempt.pk)
    qcluster.start()
    assert wait_until(lambda: _all_succeeded(jobs), timeout=60, step=0.25), qcluster.logs()
    _assert_done_once_each(jobs, emulator, qcluster)
    assert emulator.counters()["creates_total"] == len(jobs)
    assert emulator.counters()["faults_injected"].get("webhook_duplicate", 0) > 0


def test_sigkill_mid_flight_then_a_new_cluster_finishes(emulator, qcluster) -> None:
    """Kill the cluster while predictions run and their webhooks are lost: the next cluster's
    scheduled poller must find them, and collection must store their outputs, with no new create."""
    schedules.ensure_schedules()
    emulator.set_faults(latency=2.0, webhook_lost=1000)
    qcluster.env.update(STAGING_POLL_AFTER_SECONDS="1", STAGING_RECONCILE_AFTER_SECONDS="5")
    jobs = [_create(slug) for slug in ("flux-kontext-pro", "qwen-image-edit", "seedream-4")]
    qcluster.start()

    def in_flight() -> bool:
        return Attempt.objects.filter(job__in=jobs, prediction_id__isnull=False).count() == len(jobs)

    assert wait_until(in_flight, timeout=30, step=0.05), qcluster.logs()
    qcluster.kill()
    assert not Attempt.objects.filter(job__in=jobs, state="succeeded").exists()

    qcluster.start()  # the scheduler's first round comes about 30 s after start
    assert wait_until(lambda: _all_succeeded(jobs), timeout=90, step=0.25), qcluster.logs()
    _assert_done_once_each(jobs, emulator, qcluster)
    assert emulator.counters()["creates_total"] == len(jobs)
