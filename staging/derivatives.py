"""Files made from a stored output (thumbnail, disclosure-labelled copy), and their removal.

A derivative is always made from the clean stored file, which is never modified, so every kind can be
remade from it at any time (docs/architecture.md, data model). Each kind is one maker function in
`MAKERS`; adding a kind is one `DerivativeKind` choice and one `@maker(kind)` function here.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from PIL import Image, ImageDraw, ImageFont

from . import images, storage
from .models import Derivative, DerivativeKind, StagedImage

# A maker turns the decoded clean output into the derivative's encoded bytes (JPEG, PNG or WebP).
Maker = Callable[[StagedImage, Image.Image], bytes]
MAKERS: dict[str, Maker] = {}


def maker(kind: DerivativeKind) -> Callable[[Maker], Maker]:
    def register(function: Maker) -> Maker:
        MAKERS[kind] = function
        return function

    return register


@maker(DerivativeKind.THUMBNAIL)
def thumbnail(image: StagedImage, source: Image.Image) -> bytes:
    return images.thumbnail_bytes(source, settings.STAGING_THUMBNAIL_SIZE)


# The label's text never gets smaller than this, however small the image (docs/architecture.md#disclosure-labels).
MIN_LABEL_TEXT_PX = 10


@dataclass(frozen=True)
class LabelLayout:
    """Where the disclosure label goes on an image of a given size: the box, the text's origin and font."""

    box: tuple[int, int, int, int]  # left, top, right, bottom (right and bottom exclusive)
    text_origin: tuple[int, int]
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont


def label_layout(width: int, height: int) -> LabelLayout:
    """The label scaled with the image (text height = STAGING_LABEL_SIZE x width), so that it keeps the
    same share of a thumbnail as of the full photo, in the corner STAGING_LABEL_POSITION names.

    Pillow's built-in scalable font draws it, so no system font is needed.
    """
    text = settings.STAGING_LABEL_TEXT
    font = ImageFont.load_default(size=max(MIN_LABEL_TEXT_PX, round(width * settings.STAGING_LABEL_SIZE)))
    left, top, right, bottom = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), text, font=font)
    pad = max(2, round((bottom - top) * 0.4))
    box_w, box_h = min(width, right - left + 2 * pad), min(height, bottom - top + 2 * pad)
    vertical, horizontal = settings.STAGING_LABEL_POSITION.split("-")
    x0 = pad if horizontal == "left" else width - box_w - pad
    y0 = pad if vertical == "top" else height - box_h - pad
    x0, y0 = max(0, x0), max(0, y0)
    return LabelLayout(box=(x0, y0, x0 + box_w, y0 + box_h), text_origin=(x0 + pad - left, y0 + pad - top), font=font)


@maker(DerivativeKind.LABELLED)
def labelled(image: StagedImage, source: Image.Image) -> bytes:
    """The output with the "Virtually Staged" disclosure drawn on a copy; outside the label's box every pixel
    is the clean file's (lossless PNG when the output is PNG). Never sent anywhere but to whoever downloads it."""
    layout = label_layout(*source.size)
    base = source.convert("RGBA")
    overlay = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    x0, y0, x1, y1 = layout.box
    draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=(0, 0, 0, round(255 * settings.STAGING_LABEL_OPACITY)))
    draw.text(layout.text_origin, settings.STAGING_LABEL_TEXT, font=layout.font, fill=(255, 255, 255, 255))
    marked = Image.alpha_composite(base, overlay).convert("RGB")
    buffer = io.BytesIO()
    if source.format == "PNG" or image.content_type == "image/png":
        marked.save(buffer, "PNG")
    else:
        marked.save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def by_kind(image: StagedImage) -> dict[str, Derivative]:
    """The image's derivatives by kind; reads `prefetch_related("derivatives")` when the caller did it."""
    return {derivative.kind: derivative for derivative in image.derivatives.all()}


def get_derivative(image: StagedImage, kind: DerivativeKind) -> Derivative | None:
    return by_kind(image).get(kind)


def load_source(image: StagedImage) -> Image.Image:
    """The clean stored output, decoded with the same checks as when it was collected."""
    with image.file.open("rb") as handle:
        data = handle.read()
    return images.decode(data, what="output")


def make_derivative(image: StagedImage, kind: DerivativeKind, source: Image.Image | None = None) -> Derivative:
    """The image's derivative of `kind`, made and stored unless it exists (idempotent, safe to race).

    `source` is the decoded clean file when the caller already holds it (collection just decoded it),
    so that the output is not read and decoded twice; it is only read from, never changed.
    """
    existing = image.derivatives.filter(kind=kind).first()
    if existing is not None:
        return existing
    data = MAKERS[kind](image, source if source is not None else load_source(image))
    with Image.open(io.BytesIO(data)) as made:  # reads the header only
        extension, content_type = images.ALLOWED_FORMATS[made.format]
        width, height = made.size
    derivative = Derivative(
        image=image, kind=kind, content_type=content_type, width=width, height=height, size=len(data)
    )
    derivative.file.save(f"output-{image.index}-{kind}.{extension}", ContentFile(data), save=False)
    try:
        with transaction.atomic():
            derivative.save()
    except IntegrityError:  # a concurrent maker stored it first: keep theirs
        storage.delete_files(derivative.file)
        return image.derivatives.get(kind=kind)
    return derivative


def delete_staged_image(image: StagedImage) -> None:
    """Delete a stored output: its row, its derivatives' rows, and all their files.

    The one way an output leaves (a lost collection race, and retention's purge). Files go once the
    rows are gone for good (on commit), so a rolled-back delete never leaves a row without its file.
    An image never saved (a lost race) has only its own file to delete.
    """
    files = [image.file]
    if image.pk is not None:
        files += [derivative.file for derivative in image.derivatives.all()]
        image.delete()  # the derivative rows cascade
    transaction.on_commit(lambda: storage.delete_files(*files))
