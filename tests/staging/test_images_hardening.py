"""Photos built to hurt: malformed EXIF, a 16-bit RGBA monster, big JPEGs, many decodes at once.

Each class must end in a clear answer (accepted, or refused with a message saying what to do), never
a 500; memory is bounded by the header checks and the decode semaphore (figures: bench/memory.py).
"""

from __future__ import annotations

import io
import logging
import threading
from pathlib import Path

import pytest
from PIL import Image, ImageFile

from staging import images, services
from staging.errors import ImageRejected
from staging.images import check_upload, open_checked
from staging.models import StagingJob
from tests.fixtures.photos import (
    BROKEN_EXIF,
    broken_exif_photo,
    exif_with_orientation,
    image_bytes,
    png_bytes,
    upload,
)
from tests.fixtures.waiting import wait_until

FORMATS = ["JPEG", "PNG", "WEBP"]
CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}


def stored_files(settings) -> list[Path]:
    root = Path(settings.MEDIA_ROOT) / "staging"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


# --- malformed EXIF ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_malformed_exif_means_no_orientation_and_says_so(fmt, caplog) -> None:
    data = broken_exif_photo(fmt, size=(64, 48))
    with pytest.raises(SyntaxError, match="not a TIFF file"):  # what used to escape as a 500
        Image.open(io.BytesIO(data)).getexif()
    with caplog.at_level(logging.INFO, logger="staging.images"):
        checked = check_upload(io.BytesIO(data))
    assert (checked.format, checked.width, checked.height, checked.upright) == (fmt, 64, 48, None)
    assert checked.content == data
    [record] = [r for r in caplog.records if r.name == "staging.images"]
    assert "EXIF data cannot be read" in record.getMessage() and "not rotated" in record.getMessage()


def test_malformed_exif_after_the_pixel_data_of_a_png(caplog) -> None:
    data = png_bytes(40, 30, exif=BROKEN_EXIF, exif_after_pixels=True)
    with caplog.at_level(logging.INFO, logger="staging.images"):
        checked = check_upload(io.BytesIO(data))
    assert (checked.width, checked.height, checked.upright) == (40, 30, None)
    assert any("EXIF data cannot be read" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("value", [0, 9, 65535])
def test_an_orientation_outside_1_to_8_is_ignored(value, caplog) -> None:
    data = image_bytes("JPEG", (60, 40), exif=exif_with_orientation(value))
    with caplog.at_level(logging.INFO, logger="staging.images"):
        checked = check_upload(io.BytesIO(data))
    assert (checked.width, checked.height, checked.upright) == (60, 40, None)
    assert any("not 1-8" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_rotated_photo_of_every_format_is_made_upright(fmt) -> None:
    data = image_bytes(fmt, (60, 40), exif=exif_with_orientation(6))
    checked = check_upload(io.BytesIO(data))
    assert (checked.width, checked.height) == (40, 60)
    with Image.open(io.BytesIO(checked.upright)) as upright:
        assert upright.format == fmt and upright.size == (40, 60)
        assert upright.getexif().get(0x0112) is None  # not rotated a second time by whoever reads it


def test_a_png_whose_exif_follows_the_pixels_is_still_made_upright() -> None:
    checked = check_upload(io.BytesIO(png_bytes(60, 40, exif=exif_with_orientation(8), exif_after_pixels=True)))
    assert (checked.width, checked.height) == (40, 60)
    assert Image.open(io.BytesIO(checked.upright)).size == (40, 60)


@pytest.mark.django_db
@pytest.mark.parametrize("fmt", FORMATS)
def test_the_jobs_api_accepts_a_photo_with_malformed_exif(fmt, operator_client, settings) -> None:
    settings.REPLICATE_API_TOKEN = "r8_not_used"  # the on_commit submit never runs in this test
    photo = upload(broken_exif_photo(fmt), name=f"room.{fmt.lower()}", content_type=CONTENT_TYPES[fmt])
    response = operator_client.post("/api/v1/jobs", {"image": photo, "model": "flux-kontext-pro"})
    assert response.status_code == 201, response.content
    job = StagingJob.objects.get()
    assert (job.photo_width, job.photo_height) == (64, 48) and not job.input_photo


# --- the memory budget --------------------------------------------------------------------------------


@pytest.fixture
def no_decoding(monkeypatch):
    def refuse(self):
        raise AssertionError("the image must be refused from its header, before any decoding")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


@pytest.mark.django_db
def test_a_16_bit_rgba_monster_is_refused_from_its_header(no_decoding, settings) -> None:
    """The issue's photo: 6300x6300 (39.7 MP, under the pixel cap), 16-bit RGBA, rotated, ~1.4 MB here."""
    settings.REPLICATE_API_TOKEN = "r8_not_used"
    monster = png_bytes(6300, 6300, bit_depth=16, color_type=6, exif=exif_with_orientation(6))
    before = stored_files(settings)
    with pytest.raises(ImageRejected) as info:
        services.create_job(upload(monster, name="room.png", content_type="image/png"), "flux-kontext-pro")
    message = str(info.value)
    assert "6300x6300" in message and "16-bit RGBA" in message and "8 bytes a pixel" in message
    assert "303 MB" in message and "160 MB limit" in message and "8-bit" in message
    assert not StagingJob.objects.exists() and stored_files(settings) == before


@pytest.mark.django_db
def test_the_jobs_api_answers_422_on_the_image_field_for_the_monster(no_decoding, operator_client, settings) -> None:
    settings.REPLICATE_API_TOKEN = "r8_not_used"
    monster = png_bytes(6300, 6300, bit_depth=16, color_type=6)
    photo = upload(monster, name="room.png", content_type="image/png")
    response = operator_client.post("/api/v1/jobs", {"image": photo, "model": "flux-kontext-pro"})
    assert response.status_code == 422, response.content
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "image"] and "of memory to decode" in error["msg"]
    assert not StagingJob.objects.exists()


@pytest.mark.parametrize(
    ("bit_depth", "color_type", "accepted"),
    [
        (8, 0, True),  # gray: 1 byte a pixel
        (16, 0, True),  # 16-bit gray: 2
        (8, 2, True),  # RGB: kept in 4 bytes by Pillow
        (8, 6, True),  # RGBA: 4
        (16, 2, False),  # 16-bit RGB: 6
        (16, 6, False),  # 16-bit RGBA: 8
    ],
)
def test_the_byte_budget_counts_bit_depth_and_alpha(bit_depth, color_type, accepted, settings) -> None:
    settings.STAGING_MAX_DECODE_BYTES = 1000 * 1000 * 4  # a 1000x1000 photo at 4 bytes a pixel just fits
    data = png_bytes(1000, 1000, bit_depth=bit_depth, color_type=color_type)
    if accepted:
        assert open_checked(data).size == (1000, 1000)
    else:
        with pytest.raises(ImageRejected, match="of memory to decode"):
            open_checked(data)


def test_an_8_bit_rgba_photo_of_the_monster_size_passes_the_header_checks() -> None:
    assert open_checked(png_bytes(6300, 6300, color_type=6)).size == (6300, 6300)


# --- big JPEGs ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_jpeg() -> bytes:
    """24 megapixels (6000x4000), rotated 90° clockwise by its EXIF orientation."""
    return image_bytes("JPEG", (6000, 4000), color=(120, 90, 60), quality=80, exif=exif_with_orientation(6))


def test_a_24_megapixel_jpeg_is_accepted_and_made_upright(big_jpeg) -> None:
    checked = check_upload(io.BytesIO(big_jpeg))
    assert (checked.format, checked.width, checked.height) == ("JPEG", 4000, 6000)
    assert checked.content == big_jpeg
    with Image.open(io.BytesIO(checked.upright)) as upright:
        assert upright.size == (4000, 6000) and upright.mode == "RGB"
        upright.draft("RGB", (500, 750))
        assert upright.getpixel((0, 0)) == pytest.approx((120, 90, 60), abs=3)


def test_a_jpeg_that_needs_no_rotation_is_checked_at_a_fraction_of_its_pixels(monkeypatch) -> None:
    data = image_bytes("JPEG", (6000, 4000), quality=80)
    loaded_sizes: list[tuple[int, int]] = []
    real_load = ImageFile.ImageFile.load

    def spy(self):
        loaded_sizes.append(self.size)
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    checked = check_upload(io.BytesIO(data))
    assert (checked.width, checked.height, checked.upright) == (6000, 4000, None)  # the photo's real size
    assert loaded_sizes == [(750, 500)]  # decoded at 1/8 scale


def test_a_truncated_jpeg_is_still_refused_at_a_fraction_of_its_pixels() -> None:
    data = image_bytes("JPEG", (1600, 1200), quality=95)
    with pytest.raises(ImageRejected, match="truncated"):
        check_upload(io.BytesIO(data[: len(data) // 2]))


# --- decodes at once -----------------------------------------------------------------------------------


def test_the_decode_semaphore_bounds_concurrent_decodes(settings, monkeypatch) -> None:
    settings.STAGING_MAX_CONCURRENT_DECODES = 2
    release = threading.Event()
    lock = threading.Lock()
    decoding = 0
    most = 0
    real_load = ImageFile.ImageFile.load

    def held_load(self):
        nonlocal decoding, most
        with lock:
            decoding += 1
            most = max(most, decoding)
        try:
            release.wait(timeout=30)
            return real_load(self)
        finally:
            with lock:
                decoding -= 1

    monkeypatch.setattr(ImageFile.ImageFile, "load", held_load)
    photo = image_bytes("PNG", (30, 20))
    results: list[object] = []

    def upload_one() -> None:
        try:
            results.append(check_upload(io.BytesIO(photo)))
        except Exception as exc:  # reported by the assertion below
            results.append(exc)

    threads = [threading.Thread(target=upload_one) for _ in range(5)]
    for thread in threads:
        thread.start()
    try:
        assert wait_until(lambda: decoding == 2)
        slots = images.decode_slots()
        assert not slots.acquire(blocking=False)  # both slots are held: a third upload has to wait
    finally:
        release.set()
        for thread in threads:
            thread.join(timeout=30)
    assert most == 2
    assert len(results) == 5 and all(isinstance(r, images.CheckedImage) for r in results), results
    assert slots.acquire(blocking=False)  # every slot was given back
    slots.release()


def test_outputs_are_decoded_under_the_same_semaphore(settings, monkeypatch) -> None:
    settings.STAGING_MAX_CONCURRENT_DECODES = 1
    seen: list[bool] = []
    real_load = ImageFile.ImageFile.load

    def probe(self):
        slots = images.decode_slots()
        free = slots.acquire(blocking=False)
        if free:
            slots.release()
        seen.append(free)
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", probe)
    image = images.decode(image_bytes("PNG", (30, 20)), what="output")
    assert image.size == (30, 20) and seen == [False]
