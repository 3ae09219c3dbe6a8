"""Retention: the purge forgets exactly what the settings say, files included, and a dry run nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_q.models import Task

from staging import retention
from staging.models import Derivative, StagedImage, StagingJob, WebhookDelivery
from tests.fixtures.pipeline import drive

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def staged(pipeline, make_job) -> StagedImage:
    job = make_job()
    assert drive(job) == "succeeded"
    return StagedImage.objects.get(attempt__job=job)


def files_of(image: StagedImage) -> list:
    return [image.file, *(derivative.file for derivative in image.derivatives.all())]


def test_outputs_are_kept_unless_a_retention_is_set(settings, staged):
    settings.STAGING_RETENTION_DAYS = None
    report = retention.purge(now=timezone.now() + timedelta(days=3650))
    assert report.outputs == 0 and StagedImage.objects.filter(pk=staged.pk).exists()


def test_expired_outputs_go_with_their_derivatives_and_files_but_the_original_stays(settings, staged):
    settings.STAGING_RETENTION_DAYS = 30
    files = files_of(staged)
    assert len(files) == 2 and all(f.storage.exists(f.name) for f in files)
    job = StagingJob.objects.get(attempts__images=staged)

    assert retention.purge(now=timezone.now() + timedelta(days=29)).outputs == 0  # not yet expired
    report = retention.purge(now=timezone.now() + timedelta(days=31))

    assert report.outputs == 1
    assert not StagedImage.objects.exists() and not Derivative.objects.exists()
    assert not any(f.storage.exists(f.name) for f in files)
    job.refresh_from_db()
    assert job.photo.storage.exists(job.photo.name)  # the original is kept while the job exists
    assert job.status == "succeeded"


def test_a_dry_run_counts_and_deletes_nothing(settings, staged):
    settings.STAGING_RETENTION_DAYS = 1
    later = timezone.now() + timedelta(days=2)
    WebhookDelivery.objects.create(webhook_id="msg_old")
    WebhookDelivery.objects.filter(webhook_id="msg_old").update(received_at=timezone.now() - timedelta(days=8))

    report = retention.purge(now=later, dry_run=True)

    assert (report.outputs, report.webhook_deliveries, report.dry_run) == (1, 1, True)
    assert "Would delete 1 staged output" in str(report)
    assert StagedImage.objects.count() == 1 and WebhookDelivery.objects.count() == 1
    assert all(f.storage.exists(f.name) for f in files_of(staged))


def test_old_webhook_deliveries_and_task_results_go_in_batches(settings, db):
    settings.STAGING_PURGE_BATCH = 2
    now = timezone.now()
    for n in range(5):
        WebhookDelivery.objects.create(webhook_id=f"msg_{n}")
    WebhookDelivery.objects.filter(webhook_id__in=["msg_0", "msg_1", "msg_2"]).update(
        received_at=now - timedelta(days=8)
    )
    for n in range(3):
        Task.objects.create(
            id=f"t{n}", name=f"t{n}", func="f", started=now, stopped=now - timedelta(days=n * 5), success=True
        )

    report = retention.purge(now=now)

    assert report.webhook_deliveries == 3 and set(WebhookDelivery.objects.values_list("webhook_id", flat=True)) == {
        "msg_3",
        "msg_4",
    }
    assert report.task_results == 1 and set(Task.objects.values_list("id", flat=True)) == {"t0", "t1"}


def test_the_command_says_what_it_did(settings, staged, capsys):
    settings.STAGING_RETENTION_DAYS = 0
    call_command("purge", "--dry-run")
    assert "Would delete 1 staged output(s)" in capsys.readouterr().out
    call_command("purge")
    assert "Deleted 1 staged output(s)" in capsys.readouterr().out
    assert not StagedImage.objects.exists()
