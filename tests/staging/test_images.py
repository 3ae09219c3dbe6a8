"""Uploaded photos: bad ones are refused with a reason a person can act on, and nothing is stored."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image, ImageFile

from staging import services
from staging.errors import ImageRejected, JobInputError
from staging.images import check_upload
from staging.models import Attempt, StagingJob
from tests.fixtures.photos import image_bytes, upload


def stored_files(settings) -> list[str]:
    root = Path(settings.MEDIA_ROOT) / "staging"
    return [str(p) for p in root.rglob("*") if p.is_file()] if root.exists() else []


def truncated_jpeg() -> bytes:
    data = image_bytes(size=(400, 300), color=(10, 200, 30), quality=95)
    return data[: len(data) // 2]


def gif_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("P", (10, 10)).save(buffer, "GIF")
    return buffer.getvalue()


CASES = [
    (b"", "empty file"),
    (b"This is plainly not a photo, just text in a file named .jpg\n", "not an image"),
    (truncated_jpeg(), "truncated"),
    (gif_bytes(), "only JPEG, PNG and WebP"),
]


@pytest.mark.django_db
@pytest.mark.parametrize("data, reason", CASES, ids=["empty", "text", "truncated", "gif"])
def test_bad_uploads_are_rejected_and_nothing_is_stored(data, reason, pipeline, settings):
    before = stored_files(settings)
    with pytest.raises(ImageRejected, match=reason):
        services.create_job(upload(data), "flux-kontext-pro")
    assert not StagingJob.objects.exists() and not Attempt.objects.exists()
    assert stored_files(settings) == before
    assert pipeline.counters()["creates_total"] == 0


@pytest.mark.django_db
def test_over_the_byte_cap_is_rejected(pipeline, settings):
    settings.STAGING_MAX_UPLOAD_BYTES = 1000
    data = image_bytes(size=(300, 300), color=(1, 2, 3))
    assert len(data) > 1000
    with pytest.raises(ImageRejected, match="limit"):
        services.create_job(upload(data), "flux-kontext-pro")
    assert not StagingJob.objects.exists()


def test_pixel_cap_is_checked_before_decoding(settings, monkeypatch):
    settings.STAGING_MAX_IMAGE_PIXELS = 1_000_000
    buffer = io.BytesIO()
    Image.new("L", (3000, 3000)).save(buffer, "PNG")  # 9 MP that compress to a few KB: a small bomb

    def no_decode(self):
        raise AssertionError("the full image must not be decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decode)
    with pytest.raises(ImageRejected, match="megapixel limit"):
        check_upload(io.BytesIO(buffer.getvalue()))


def test_pillow_decompression_bomb_is_rejected(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageRejected, match="too many pixels"):
        check_upload(io.BytesIO(image_bytes(size=(100, 100))))


def test_exif_orientation_is_applied_and_the_original_is_kept(pipeline, settings, db):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90° clockwise
    original = image_bytes(size=(60, 40), exif=exif.tobytes())
    checked = check_upload(io.BytesIO(original))
    assert (checked.width, checked.height) == (40, 60)
    job = services.create_job(upload(original), "flux-kontext-pro")
    job.refresh_from_db()
    assert job.photo.read() == original  # the upload, byte for byte
    with Image.open(job.input_photo.path) as upright:
        assert upright.size == (40, 60)
    assert (job.photo_width, job.photo_height) == (40, 60)


def test_accepted_formats(db):
    for fmt in ("JPEG", "PNG", "WEBP"):
        checked = check_upload(io.BytesIO(image_bytes(fmt)))
        assert checked.format == fmt and checked.upright is None


@pytest.mark.django_db
def test_unknown_model_and_bad_override_store_nothing(pipeline, settings):
    before = stored_files(settings)
    with pytest.raises(JobInputError, match="Unknown model") as info:
        services.create_job(upload(), "dall-e-9")
    assert [error["loc"] for error in info.value.errors] == [["model"]]
    with pytest.raises(JobInputError, match="safety_tolerance") as info:
        services.create_job(upload(), "flux-kontext-pro", config_override={"safety_tolerance": 5})
    assert ["config", "safety_tolerance"] in [error["loc"] for error in info.value.errors]
    with pytest.raises(JobInputError, match="output_format"):
        services.create_job(upload(), "seedream-4", config_override={"output_format": "png"})
    assert not StagingJob.objects.exists()
    assert stored_files(settings) == before
    assert os.path.isdir(settings.MEDIA_ROOT)
