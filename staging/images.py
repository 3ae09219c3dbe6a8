"""Checks on uploaded photos and downloaded outputs: is this a real, reasonably sized image?

Order matters for safety: the byte cap is checked before reading everything; the pixel count and the
memory the decoded pixels would take are read from the header (Pillow's lazy `open`) before anything
is decoded, so neither a huge file nor a decompression bomb costs memory. Messages say what is wrong
and what to do about it.

Memory (docs/operations.md#photo-memory) is bounded three ways:

- **A byte budget besides the pixel cap.** `STAGING_MAX_DECODE_BYTES` caps width x height x bytes
  per pixel, counting 16-bit samples and alpha (a 16-bit RGBA PNG is 8 bytes a pixel, twice an 8-bit
  one, though it can compress to a few hundred KB), so a 40-megapixel 16-bit RGBA photo is refused
  from its header instead of being decoded.
- **Few decodes at once.** At most `STAGING_MAX_CONCURRENT_DECODES` images are decoded at the same
  time in a process (a semaphore); ten concurrent uploads take turns instead of all holding a
  decoded copy at once.
- **Only as much decoding as needed.** A JPEG that needs no rotation is checked at 1/8 scale
  (`draft`: libjpeg still reads every byte, so a damaged file is still caught, into 1/64 of the
  memory); only a photo whose EXIF orientation rotates it is decoded in full, transposed and
  re-encoded, and the decoded original is released before the upright copy is encoded.

A malformed EXIF block (Pillow: `SyntaxError: not a TIFF file`) is not the photo's pixels: such a
photo is treated as having no orientation, and a log line says so.
"""

from __future__ import annotations

import io
import logging
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

from django.conf import settings
from PIL import Image, UnidentifiedImageError

from .errors import ImageRejected

logger = logging.getLogger(__name__)

ALLOWED_FORMATS = {"JPEG": ("jpg", "image/jpeg"), "PNG": ("png", "image/png"), "WEBP": ("webp", "image/webp")}
ORIENTATION_TAG = 0x0112
# EXIF orientation -> the transpose that makes the photo upright (as `ImageOps.exif_transpose` does).
TRANSPOSE_FOR_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
SWAPS_SIDES = {5, 6, 7, 8}
# Channels of each PNG colour type (IHDR), for the bytes a pixel takes at the file's bit depth.
PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
# Bytes a pixel takes in Pillow's memory: every multi-band mode is kept in 4 bytes (RGB too).
STORED_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}


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


# --- decodes at once ------------------------------------------------------------------------------

_slots_lock = threading.Lock()
_slots: tuple[int, threading.BoundedSemaphore] | None = None


def decode_slots() -> threading.BoundedSemaphore:
    """The process's decode semaphore, sized by `STAGING_MAX_CONCURRENT_DECODES`.

    Made again when the setting changes (tests change it); a holder of the old one releases that one.
    """
    global _slots
    size = max(1, int(settings.STAGING_MAX_CONCURRENT_DECODES))
    with _slots_lock:
        if _slots is None or _slots[0] != size:
            _slots = (size, threading.BoundedSemaphore(size))
        return _slots[1]


@contextmanager
def decode_slot() -> Iterator[None]:
    """Hold one of the process's decode slots (waiting for one) while decoded pixels are in memory."""
    with decode_slots():
        yield


# --- the header -------------------------------------------------------------------------------------


def bytes_per_pixel(image: Image.Image, data: bytes) -> int:
    """What one pixel costs to decode: the file's channels x bytes per sample, or Pillow's storage if more.

    Only PNG carries 16-bit samples among the accepted formats (Pillow narrows them to 8 bits, but the
    budget counts what the file holds, so that a 16-bit photo gets half the pixels of an 8-bit one).
    """
    stored = STORED_BYTES.get(image.mode, 4)
    if image.format == "PNG" and len(data) >= 26:  # IHDR: bit depth at byte 24, colour type at 25
        bit_depth, color_type = data[24], data[25]
        return max(stored, PNG_CHANNELS.get(color_type, 4) * max(1, bit_depth // 8))
    return stored


def _describe(image: Image.Image, data: bytes) -> str:
    if image.format == "PNG" and len(data) >= 26 and data[24] == 16:
        return f"16-bit {image.mode}"
    return image.mode


def open_checked(data: bytes, *, what: str = "photo", max_pixels: int | None = None) -> Image.Image:
    """Open lazily and check format, pixel count and decode memory from the header. Raises ImageRejected.

    Nothing is decoded: the image returned has read its header (and, for JPEG and WebP, its EXIF) only.
    """
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
    per_pixel = bytes_per_pixel(image, data)
    budget = settings.STAGING_MAX_DECODE_BYTES
    if width * height * per_pixel > budget:
        raise ImageRejected(
            f"The {what} would take {_mb(width * height * per_pixel)} of memory to decode ({width}x{height} "
            f"pixels, {_describe(image, data)} at {per_pixel} bytes a pixel), more than the {_mb(budget)} limit. "
            "Save it as an 8-bit image (without transparency if it has none to show) or resize it, and upload again."
        )
    return image


def _load(image: Image.Image, what: str) -> None:
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as exc:
        reason = "truncated (incomplete)" if "truncated" in str(exc).lower() else "damaged"
        raise ImageRejected(f"The {what} file is {reason}. Export or download it again and re-upload.") from None


def decode(data: bytes, *, what: str = "photo", max_pixels: int | None = None) -> Image.Image:
    """Check the header, then fully decode (holding a decode slot while decoding). Raises ImageRejected."""
    image = open_checked(data, what=what, max_pixels=max_pixels)
    with decode_slot():
        _load(image, what)
    return image


# --- orientation ------------------------------------------------------------------------------------


def orientation(image: Image.Image) -> int:
    """The photo's EXIF orientation (1 to 8); 1 when it has none, or when its EXIF cannot be read.

    A PNG's eXIf chunk may follow the pixel data, so for PNG Pillow decodes the image to find it:
    ask after `load()`.
    """
    try:
        value = image.getexif().get(ORIENTATION_TAG, 1)
    except Exception as exc:  # Pillow's EXIF parser raises SyntaxError, struct.error, ValueError… on bad data
        logger.info(
            "The %s photo's EXIF data cannot be read (%s: %.120s); treating it as not rotated.",
            image.format,
            type(exc).__name__,
            exc,
        )
        return 1
    if value is None or value == 1:
        return 1
    if not isinstance(value, int) or value not in TRANSPOSE_FOR_ORIENTATION:
        logger.info(
            "The %s photo's EXIF orientation %.40r is not 1-8; treating it as not rotated.", image.format, value
        )
        return 1
    return value


def _encode_upright(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    if fmt == "JPEG":
        if image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        image.save(buffer, "JPEG", quality=95)
    else:
        image.save(buffer, fmt)
    return buffer.getvalue()


def check_upload(fileobj: IO[bytes]) -> CheckedImage:
    """Validate an uploaded photo; returns its bytes and facts, or raises ImageRejected."""
    data = read_capped(fileobj, settings.STAGING_MAX_UPLOAD_BYTES)
    image = open_checked(data)
    fmt = image.format
    extension, content_type = ALLOWED_FORMATS[fmt]
    width, height = image.size
    upright_bytes = None
    with decode_slot():
        turn = 1 if fmt == "PNG" else orientation(image)  # JPEG and WebP carry their EXIF in the header
        if fmt == "JPEG" and turn == 1:
            image.draft(image.mode, (1, 1))  # decode at the smallest scale: every byte checked, 1/64 of the pixels
        _load(image, "photo")
        if fmt == "PNG":
            turn = orientation(image)
        if turn != 1:
            upright = image.transpose(TRANSPOSE_FOR_ORIENTATION[turn])
            image.close()  # the decoded original is not needed for encoding the upright copy
            upright_bytes = _encode_upright(upright, fmt)
            upright.close()
            if turn in SWAPS_SIDES:
                width, height = height, width
    return CheckedImage(
        content=data,
        format=fmt,
        extension=extension,
        content_type=content_type,
        width=width,
        height=height,
        upright=upright_bytes,
    )


def thumbnail_bytes(image: Image.Image, size: int) -> bytes:
    """A small JPEG preview, at most `size` pixels a side (never enlarged); `image` is only read.

    Resized straight from the decoded image rather than `copy()` + `thumbnail()`: the copy was 12% of
    a collect's image work, and `reducing_gap=1.0` lets `reduce()` shrink by whole factors (a cheap box
    filter) before the bicubic pass, which then works on a quarter of the pixels (BENCHMARKS.md, own_cost).
    """
    width, height = image.size
    scale = min(size / width, size / height)
    thumb = image
    if scale < 1:
        target = (max(1, round(width * scale)), max(1, round(height * scale)))
        thumb = image.resize(target, Image.Resampling.BICUBIC, reducing_gap=1.0)
    if thumb.mode not in ("RGB", "L"):
        thumb = thumb.convert("RGB")
    buffer = io.BytesIO()
    thumb.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()
