"""Input fetching and output rendering: real images, so the service's download/store path is exercised.

The output is derived from the input (cropped to the requested aspect ratio, at most 1024 px, tinted,
with a small mark) so a test can tell an emulator output from its input and from its siblings.
"""

from __future__ import annotations

import base64
import hashlib
import io
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import unquote_to_bytes

import httpx
from PIL import Image, ImageDraw, ImageOps

MAX_INPUT_BYTES = 30 * 1024 * 1024
MAX_SIDE = 1024
FORMATS = {
    "jpg": ("JPEG", "image/jpeg"),
    "jpeg": ("JPEG", "image/jpeg"),
    "png": ("PNG", "image/png"),
    "webp": ("WEBP", "image/webp"),
}
TINTS = [(255, 170, 60), (60, 170, 255), (120, 220, 120), (220, 90, 200), (240, 230, 90)]


T = TypeVar("T")
CACHE_SIZE = 64
_cache_lock = threading.Lock()
# Benchmarks send the same few images thousands of times: decoding and encoding are the emulator's
# only real CPU cost, so both are memoised (images in the caches are never mutated).
_decoded: OrderedDict[str, Image.Image] = OrderedDict()
_rendered: OrderedDict[tuple[Any, ...], tuple[bytes, str]] = OrderedDict()


def _memo(cache: OrderedDict[Any, T], key: Any, make: Callable[[], T]) -> T:
    with _cache_lock:
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
    value = make()
    with _cache_lock:
        cache[key] = value
        while len(cache) > CACHE_SIZE:
            cache.popitem(last=False)
    return value


def digest(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


class InputImageError(Exception):
    """The input image could not be fetched or decoded; the prediction fails with this message."""


def _short(url: str) -> str:
    return url if len(url) <= 80 else url[:77] + "..."


def fetch_bytes(url: str, local: Callable[[str], bytes | None], http: httpx.Client) -> bytes:
    """Bytes behind a data: URI, one of the emulator's own URLs (`local`), or any http(s) URL."""
    if url.startswith("data:"):
        header, sep, payload = url[5:].partition(",")
        if not sep:
            raise InputImageError(f"Malformed data URI {_short(url)!r}")
        try:
            if header.endswith(";base64"):
                return base64.b64decode(payload, validate=False)
            return unquote_to_bytes(payload)
        except ValueError as exc:
            raise InputImageError(f"Malformed data URI {_short(url)!r}: {exc}") from None
    if not url.startswith(("http://", "https://")):
        raise InputImageError(f"Unsupported image URL {_short(url)!r}: only http(s) URLs and data URIs are accepted")
    own = local(url)
    if own is not None:
        return own
    try:
        response = http.get(url, follow_redirects=True, timeout=15)
    except httpx.HTTPError as exc:
        raise InputImageError(f"Failed to fetch input image {_short(url)!r}: {type(exc).__name__}: {exc}") from None
    if response.status_code != 200:
        raise InputImageError(f"Failed to fetch input image {_short(url)!r}: HTTP {response.status_code}")
    if len(response.content) > MAX_INPUT_BYTES:
        raise InputImageError(f"Input image {_short(url)!r} is larger than {MAX_INPUT_BYTES} bytes")
    return response.content


def decode(data: bytes, url: str) -> Image.Image:
    """Decode with Pillow (memoised by content); anything Pillow cannot open is a clear, permanent failure."""
    return _memo(_decoded, digest(data), lambda: _decode(data, url))


def _decode(data: bytes, url: str) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        image.draft("RGB", (2 * MAX_SIDE, 2 * MAX_SIDE))  # JPEG: decode at a reduced scale, much faster
        image.load()
    except Exception as exc:  # Pillow raises many exception types for bad data
        raise InputImageError(f"Could not decode input image {_short(url)!r}: {exc}") from None
    return ImageOps.exif_transpose(image).convert("RGB")


def placeholder(width: int = 1024, height: int = 768) -> Image.Image:
    """A gradient for text-only inputs (Kontext without input_image, Seedream without image_input)."""
    gradient = Image.linear_gradient("L").resize((width, height))
    return Image.merge("RGB", (gradient, gradient.rotate(180), Image.new("L", (width, height), 128)))


def _crop_to_ratio(image: Image.Image, aspect_ratio: str | None) -> Image.Image:
    if not aspect_ratio or ":" not in aspect_ratio:
        return image.copy()
    try:
        w_part, h_part = (int(part) for part in aspect_ratio.split(":", 1))
    except ValueError:
        return image.copy()
    return ImageOps.fit(image, _fit_size(image.size, w_part / h_part))


def _fit_size(size: tuple[int, int], ratio: float) -> tuple[int, int]:
    width, height = size
    if width / height > ratio:
        return max(1, round(height * ratio)), height
    return width, max(1, round(width / ratio))


def render(
    source: Image.Image,
    *,
    fmt: str,
    index: int,
    label: str,
    aspect_ratio: str | None = None,
    quality: int = 90,
    source_key: str | None = None,
) -> tuple[bytes, str]:
    """One output image as (encoded bytes, content type); memoised when `source_key` identifies the source."""
    make = lambda: _render(source, fmt=fmt, index=index, label=label, aspect_ratio=aspect_ratio, quality=quality)  # noqa: E731
    if source_key is None:
        return make()
    return _memo(_rendered, (source_key, fmt, index, label, aspect_ratio, quality), make)


def _render(
    source: Image.Image, *, fmt: str, index: int, label: str, aspect_ratio: str | None, quality: int
) -> tuple[bytes, str]:
    image = _crop_to_ratio(source, aspect_ratio)
    image.thumbnail((MAX_SIDE, MAX_SIDE))
    tint = Image.new("RGB", image.size, TINTS[index % len(TINTS)])
    image = Image.blend(image, tint, 0.18)
    draw = ImageDraw.Draw(image)
    box_w, box_h = min(image.width, 150), min(image.height, 28)
    draw.rectangle((image.width - box_w, image.height - box_h, image.width, image.height), fill=(20, 20, 20))
    draw.text((image.width - box_w + 6, image.height - box_h + 8), f"EMU {label} #{index + 1}", fill=(255, 255, 255))
    pil_format, content_type = FORMATS.get(fmt, FORMATS["png"])
    buffer = io.BytesIO()
    if pil_format == "PNG":
        image.save(buffer, pil_format)
    else:
        image.save(buffer, pil_format, quality=max(1, min(quality, 100)))
    return buffer.getvalue(), content_type
