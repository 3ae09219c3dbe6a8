"""The whole pipeline against the emulator, for every registered model, by polling and by webhook."""

from __future__ import annotations

import hashlib

import pytest
from PIL import Image

from models_config.registry import REGISTRY, OutputShape
from staging import derivatives, selectors
from staging.models import DerivativeKind, StagedImage, StagingJob
from tests.fixtures.pipeline import attempts, drive
from tests.fixtures.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def assert_outputs_stored(job, emulator) -> None:
    attempt = attempts(job)[-1]
    assert attempt.state == "succeeded"
    assert attempt.prediction_id
    if attempt.input and emulator.get_prediction(attempt.prediction_id).get("webhook"):
        assert emulator.creates_for_token(attempt.token) == 1
    assert emulator.counters()["creates_total"] == 1
    outputs = list(selectors.outputs_of(job))
    prediction = emulator.get_prediction(attempt.prediction_id)
    expected = 1 if REGISTRY[job.model_slug].output_shape == OutputShape.SINGLE else len(prediction["output"])
    assert len(outputs) == expected >= 1
    for image in outputs:
        data = image.file.read()
        assert hashlib.sha256(data).hexdigest() == image.checksum
        assert image.size == len(data)
        with Image.open(image.file.path) as decoded:
            assert decoded.size == (image.width, image.height)
        with Image.open(derivatives.get_derivative(image, DerivativeKind.THUMBNAIL).file.path) as thumb:
            assert max(thumb.size) <= 384
    assert attempt.cost == REGISTRY[job.model_slug].price_per_image * len(outputs)
    assert attempt.input and attempt.config
    assert attempt.predict_time is not None


@pytest.mark.parametrize("slug", list(REGISTRY))
def test_poll_path_stores_outputs_for_every_model(slug, make_job, pipeline):
    job = make_job(slug, room_type="bedroom", style="scandinavian", seed=7)
    assert drive(job) == "succeeded"
    assert_outputs_stored(job, pipeline)
    attempt = attempts(job)[0]
    # No public URL: the photo went through the Files API, and no webhook was asked for.
    image_value = str(attempt.input)
    assert "/v1/files/" in image_value
    assert "webhook" not in pipeline.get_prediction(attempt.prediction_id)
    assert "bedroom" in next(v for k, v in attempt.input.items() if k == "prompt")


@pytest.mark.parametrize("slug", list(REGISTRY))
def test_webhook_path_stores_outputs_for_every_model(slug, make_job, webhook_pipeline, live_server):
    job = make_job(slug)
    # No poller here: only the webhooks move the job forward.
    assert wait_until(lambda: selectors.get_job(job.pk).status == "succeeded", timeout=10)
    assert_outputs_stored(job, webhook_pipeline)
    attempt = attempts(job)[0]
    assert attempt.input[next(k for k in ("input_image", "image", "image_input") if k in attempt.input)]
    assert live_server.url in str(attempt.input)  # the photo was served from our storage URL
    prediction = webhook_pipeline.get_prediction(attempt.prediction_id)
    assert prediction["webhook"].endswith(f"/webhooks/replicate/?attempt={attempt.token}")


def test_job_status_is_derived_from_the_latest_attempt(make_job, pipeline):
    job = make_job("seedream-4")
    assert selectors.get_job(job.pk).status in ("running", "queued")
    drive(job)
    assert StagingJob.objects.with_status().filter(derived_status="succeeded", pk=job.pk).exists()
    assert StagedImage.objects.filter(attempt__job=job).count() >= 1
