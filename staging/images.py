"""Checks on uploaded photos and downloaded outputs: is this a real, reasonably sized image?

Order matters for safety: the byte cap is checked before reading everything, the pixel count is
read from the header (Pillow's lazy `open`) before the full decode, so neither a huge file nor a
decompression bomb costs memory. Messages say what is wrong and what to do about it.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import IO

from django.conf import settings
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageRejected

ALLOWED_FORMATS = {"JPEG": ("jpg", "image/jpeg"), "PNG": ("png", "image/png"), "WEBP": ("webp", "image/webp")}
ORIENTATION_TAG = 0x0112


@dataclass(frozen=True)
class CheckedImage:
    content: bytes  # the bytes exactly as received
    format: str  # Pillow format name: JPEG, PNG, WEBP
    extension: str
    content_type: str
    width: int  # after EXIF orientation
    height: int
    upright: bytes | None = None  # re-encoded upright copy, only when EXIF orientation rotates the photo


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.0f} MB"


def read_capped(fileobj: IO[bytes], max_bytes: int) -> bytes:
    """Read at most `max_bytes`; a longer file is rejected without reading the rest."""
    size = getattr(fileobj, "size", None)
    if size is not None and size > max_bytes:
        raise ImageRejected(f"The photo is {_mb(size)}, more than the {_mb(max_bytes)} limit. Upload a smaller file.")
    if hasattr(fileobj, "seek"):
        fileobj.seek(0)
    data = fileobj.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ImageRejected(f"The photo is larger than the {_mb(max_bytes)} limit. Upload a smaller file.")
    return data


def decode(data: bytes, *, what: str = "photo", max_pixels: int | None = None) -> Image.Image:
    """Open, check format and pixel count from the header, then fully decode. Raises ImageRejected."""
    max_pixels = max_pixels or settings.STAGING_MAX_IMAGE_PIXELS
    if not data:
        raise ImageRejected(f"The {what} is an empty file. Choose the image file again and re-upload it.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=None)
    except (UnidentifiedImageError, Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        if isinstance(exc, UnidentifiedImageError):
            raise ImageRejected(
                f"The {what} is not an image Pillow can read. Upload a JPEG, PNG or WebP photo."
            ) from None
        raise ImageRejected(f"The {what} has too many pixels to process safely. Upload a smaller image.") from None
    except Exception:
        raise ImageRejected(f"The {what} could not be read as an image. Upload a JPEG, PNG or WebP photo.") from None

    if image.format not in ALLOWED_FORMATS:
        raise ImageRejected(
            f"The {what} is a {image.format or 'unknown'} image; only JPEG, PNG and WebP are accepted. "
            "Convert it first."
        )
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageRejected(f"The {what} has no pixels.")
    if width * height > max_pixels:
        raise ImageRejected(
            f"The {what} is {width}x{height} pixels ({width * height / 1e6:.0f} megapixels), more than the "
            f"{max_pixels / 1e6:.0f} megapixel limit. Resize it and upload again."
        )
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as exc:
        reason = "truncated (incomplete)" if "truncated" in str(exc).lower() else "damaged"
        raise ImageRejected(f"The {what} file is {reason}. Export or download it again and re-upload.") from None
    return image


def check_upload(fileobj: IO[bytes]) -> CheckedImage:
    """Validate an uploaded photo; returns its bytes and facts, or raises ImageRejected."""
    data = read_capped(fileobj, settings.STAGING_MAX_UPLOAD_BYTES)
    image = decode(data)
    fmt = image.format
    extension, content_type = ALLOWED_FORMATS[fmt]
    upright_bytes = None
    orientation = image.getexif().get(ORIENTATION_TAG, 1)
    if orientation not in (None, 1):
        upright = ImageOps.exif_transpose(image)
        buffer = io.BytesIO()
        if fmt == "JPEG":
            upright.convert("RGB").save(buffer, "JPEG", quality=95)
        else:
            upright.save(buffer, fmt)
        upright_bytes = buffer.getvalue()
        image = upright
    return CheckedImage(
        content=data,
        format=fmt,
        extension=extension,
        content_type=content_type,
        width=image.width,
        height=image.height,
        upright=upright_bytes,
    )


def thumbnail_bytes(image: Image.Image, size: int) -> bytes:
    """A small JPEG preview."""
    thumb = image.copy()
    thumb.thumbnail((size, size))
    if thumb.mode not in ("RGB", "L"):
        thumb = thumb.convert("RGB")
    buffer = io.BytesIO()
    thumb.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()
