"""The disclosure label: a derivative made from the clean output, changing pixels only inside its box."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys

import pytest
from django.core.files.base import ContentFile
from PIL import Image

from staging import derivatives
from staging.models import Attempt, DerivativeKind, StagedImage, StagingJob
from tests.fixtures.photos import image_bytes

LABELLED = DerivativeKind.LABELLED


def stored_output(size: tuple[int, int], fmt: str = "PNG") -> StagedImage:
    job = StagingJob(model_slug="flux-kontext-pro")
    job.photo.save("original.jpg", ContentFile(image_bytes()), save=False)
    job.save()
    attempt = Attempt.objects.create(job=job, number=1, state=Attempt.State.SUCCEEDED)
    data = image_bytes(fmt, size=size, color=(120, 180, 90))
    image = StagedImage(
        attempt=attempt,
        index=0,
        source_url="https://replicate.delivery/x/out",
        content_type=f"image/{fmt.lower()}",
        size=len(data),
        checksum=hashlib.sha256(data).hexdigest(),
        width=size[0],
        height=size[1],
    )
    image.file.save(f"output-0.{fmt.lower()}", ContentFile(data), save=False)
    image.save()
    return image


def pixels(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


@pytest.mark.django_db
@pytest.mark.parametrize("position", ["bottom-left", "bottom-right", "top-left", "top-right"])
def test_label_changes_pixels_only_inside_its_box(settings, position):
    settings.STAGING_LABEL_POSITION = position
    image = stored_output((640, 480))
    clean_bytes = image.file.open("rb").read()
    derivative = derivatives.make_derivative(image, LABELLED)
    clean, marked = pixels(clean_bytes), pixels(derivative.file.open("rb").read())
    assert marked.size == clean.size
    x0, y0, x1, y1 = derivatives.label_layout(640, 480).box
    inside = changed_outside = 0
    for y in range(0, 480, 2):
        for x in range(0, 640, 2):
            differs = clean.getpixel((x, y)) != marked.getpixel((x, y))
            if x0 <= x < x1 and y0 <= y < y1:
                inside += differs
            else:
                changed_outside += differs
    assert changed_outside == 0
    assert inside > 0.5 * ((x1 - x0) // 2) * ((y1 - y0) // 2)  # the box is darkened, the text drawn
    vertical, horizontal = position.split("-")
    assert (y0 < 240) == (vertical == "top") and (x0 < 320) == (horizontal == "left")
    # The stored clean output is untouched.
    assert hashlib.sha256(image.file.open("rb").read()).hexdigest() == image.checksum


@pytest.mark.django_db
def test_label_readable_at_thumbnail_size_and_scales_with_the_image():
    small, large = derivatives.label_layout(320, 240), derivatives.label_layout(2048, 1536)
    small_h = small.box[3] - small.box[1]
    assert small_h >= 16  # text of 14 px plus padding on a 320-px-wide image
    large_h = large.box[3] - large.box[1]
    # Same share of the picture at any size, so a thumbnail of the labelled photo keeps it legible.
    assert abs(large_h / 1536 - small_h / 240) < 0.02
    assert derivatives.label_layout(40, 30).font.size >= derivatives.MIN_LABEL_TEXT_PX


@pytest.mark.django_db
def test_label_text_is_configurable(settings):
    image = stored_output((400, 300))
    settings.STAGING_LABEL_TEXT = "Digitally Altered Image"
    settings.STAGING_LABEL_OPACITY = 0.0
    wide = derivatives.label_layout(400, 300).box
    settings.STAGING_LABEL_TEXT = "AI"
    narrow = derivatives.label_layout(400, 300).box
    assert wide[2] - wide[0] > narrow[2] - narrow[0]
    settings.STAGING_LABEL_TEXT = "Digitally Altered Image"
    marked = pixels(derivatives.make_derivative(image, LABELLED).file.open("rb").read())
    # With a transparent box only the white text changes pixels.
    assert (255, 255, 255) in {
        marked.getpixel((x, y)) for x in range(wide[0], wide[2]) for y in range(wide[1], wide[3])
    }


@pytest.mark.django_db
def test_jpeg_output_gives_a_jpeg_label():
    image = stored_output((300, 200), "JPEG")
    derivative = derivatives.make_derivative(image, LABELLED)
    assert derivative.content_type == "image/jpeg"
    assert derivatives.make_derivative(image, LABELLED).pk == derivative.pk  # made once


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("STAGING_LABEL_POSITION", "middle", "STAGING_LABEL_POSITION"),
        ("STAGING_LABEL_SIZE", "0.9", "STAGING_LABEL_SIZE"),
        ("STAGING_LABEL_OPACITY", "2", "STAGING_LABEL_OPACITY"),
        ("STAGING_LABEL_TEXT", " ", "STAGING_LABEL_TEXT"),
    ],
)
def test_bad_label_settings_stop_startup_with_a_clear_message(subprocess_env, variable, value, message):
    env = {**subprocess_env, variable: value, "DJANGO_DEBUG": "true"}
    done = subprocess.run(
        [sys.executable, "manage.py", "check"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode != 0
    assert done.stderr.startswith("error: ") and message in done.stderr  # one line, no traceback
    assert "Traceback" not in done.stderr
