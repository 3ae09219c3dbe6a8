"""Fixtures for the staging pipeline tests: the real emulator over HTTP, tasks run inline."""

from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from staging import services, sweeps
from staging.models import Attempt, StagingJob
from tests.waiting import wait_until


def image_bytes(fmt: str = "JPEG", size: tuple[int, int] = (64, 48), color=(200, 150, 90), **save) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, fmt, **save)
    return buffer.getvalue()


def upload(data: bytes | None = None, name: str = "room.jpg") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, image_bytes() if data is None else data, content_type="image/jpeg")


@pytest.fixture
def webhook_pipeline(pipeline, live_server, settings):
    """Webhook mode: the live test server is the public URL; the poller only acts on silent predictions."""
    settings.STAGING_PUBLIC_URL = live_server.url
    settings.ROOT_URLCONF = "tests.staging.urls"
    settings.STAGING_POLL_AFTER_SECONDS = 60
    return pipeline


def job_status(job: StagingJob) -> str:
    return StagingJob.objects.get(pk=job.pk).status


def drive(job: StagingJob, timeout: float = 10.0, *, poll: bool = True) -> str:
    """Run the scheduled ticks (poll mode) until the job is terminal; returns the final status."""

    def done() -> bool:
        if poll:
            sweeps.poll_in_flight()
            sweeps.retry_due()
        return job_status(job) in ("succeeded", "failed", "canceled")

    wait_until(done, timeout)
    return job_status(job)


def attempts(job: StagingJob) -> list[Attempt]:
    return list(Attempt.objects.filter(job=job).order_by("number"))


@pytest.fixture
def make_job(pipeline):
    def make(model: str = "flux-kontext-pro", **kwargs) -> StagingJob:
        return services.create_job(kwargs.pop("image_file", None) or upload(), model, **kwargs)

    return make
