"""Files made from a stored output (thumbnail; the disclosure label comes next), and their removal.

A derivative is always made from the clean stored file, which is never modified, so every kind can be
remade from it at any time (docs/architecture.md, data model). Each kind is one maker function in
`MAKERS`; adding a kind is one `DerivativeKind` choice and one `@maker(kind)` function here.
"""

from __future__ import annotations

import io
from collections.abc import Callable

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from PIL import Image

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


def by_kind(image: StagedImage) -> dict[str, Derivative]:
    """The image's derivatives by kind; reads `prefetch_related("derivatives")` when the caller did it."""
    return {derivative.kind: derivative for derivative in image.derivatives.all()}


def get_derivative(image: StagedImage, kind: DerivativeKind) -> Derivative | None:
    return by_kind(image).get(kind)


def derivative_url(image: StagedImage, kind: DerivativeKind) -> str | None:
    """The storage URL of the image's derivative of this kind, or None when it was not made."""
    derivative = get_derivative(image, kind)
    return derivative.file.url if derivative else None


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
