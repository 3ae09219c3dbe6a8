"""Copying a succeeded prediction's outputs into our storage, before Replicate deletes them (1 h).

Downloads are refused unless the URL's host is on `REPLICATE_OUTPUT_HOSTS` (`*.` wildcards) and the
scheme is https (plain http only for the configured emulator host); redirects are followed by hand so
each hop is checked; bodies are capped while streaming and must decode as an image.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import ssl
from urllib.parse import urljoin, urlsplit

import httpx
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction

from models_config.registry import get_spec

from . import derivatives, gateway, images, transitions
from .errors import DATA_REMOVED_MESSAGE, PERMANENT, GatewayError, ImageRejected
from .models import Attempt, DerivativeKind, StagedImage

logger = logging.getLogger(__name__)
S = Attempt.State
MAX_REDIRECTS = 3


class DownloadRefused(Exception):
    """The output cannot be used (host, scheme, size, not an image): a permanent failure."""


class DownloadFailed(Exception):
    """The download failed in a way that may pass (network, 5xx): leave it to the next collect."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def host_allowed(host: str) -> bool:
    host = (host or "").lower().rstrip(".")
    for pattern in settings.REPLICATE_OUTPUT_HOSTS:
        pattern = pattern.strip().lower()
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and host != pattern[2:]:
                return True
        elif host == pattern:
            return True
    return False


def _emulator_host() -> str | None:
    """The API host when it is plain http and not Replicate's (the local emulator)."""
    parts = urlsplit(settings.REPLICATE_BASE_URL)
    return parts.hostname if parts.scheme == "http" and parts.hostname != "api.replicate.com" else None


def check_url(url: str) -> None:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not host_allowed(host):
        raise DownloadRefused(f"output host {host or '(none)'!r} is not in REPLICATE_OUTPUT_HOSTS")
    if parts.scheme != "https" and not (parts.scheme == "http" and host == _emulator_host()):
        raise DownloadRefused(f"Output URL must use https (got {parts.scheme!r} for {host}).")


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context per process: loading the CA bundle costs ~20 ms of CPU, per client otherwise."""
    return ssl.create_default_context()


def download(url: str) -> bytes:
    """The bytes behind an output URL, with every safety check. Raises DownloadRefused/DownloadFailed."""
    cap = settings.STAGING_MAX_OUTPUT_BYTES
    timeout = httpx.Timeout(settings.STAGING_DOWNLOAD_TIMEOUT, connect=5.0)
    with httpx.Client(timeout=timeout, follow_redirects=False, verify=_tls_context()) as client:
        for _ in range(MAX_REDIRECTS + 1):
            check_url(url)
            try:
                with client.stream("GET", url) as response:
                    if response.is_redirect:
                        url = urljoin(url, response.headers.get("location", ""))
                        continue
                    if response.status_code != 200:
                        raise DownloadFailed(f"Output download answered {response.status_code}.", response.status_code)
                    declared = int(response.headers.get("content-length") or 0)
                    if declared > cap:
                        raise DownloadRefused(f"Output is {declared} bytes, over the {cap}-byte cap.")
                    chunks, total = [], 0
                    for chunk in response.iter_bytes():
                        total += len(chunk)
                        if total > cap:
                            raise DownloadRefused(f"Output is over the {cap}-byte cap.")
                        chunks.append(chunk)
                    return b"".join(chunks)
            except httpx.HTTPError as exc:
                raise DownloadFailed(f"Output download failed ({type(exc).__name__}).") from None
    raise DownloadRefused("Output URL redirects too many times.")


def _store(attempt: Attempt, index: int, url: str, data: bytes) -> None:
    try:
        image = images.decode(data, what="output")
    except ImageRejected as exc:
        raise DownloadRefused(str(exc)) from None
    extension, content_type = images.ALLOWED_FORMATS[image.format]
    staged = StagedImage(
        attempt=attempt,
        index=index,
        source_url=url,
        content_type=content_type,
        size=len(data),
        checksum=hashlib.sha256(data).hexdigest(),
        width=image.width,
        height=image.height,
    )
    staged.file.save(f"output-{index}.{extension}", ContentFile(data), save=False)
    try:
        with transaction.atomic():  # the output and its thumbnail are stored together, or not at all
            staged.save()
            derivatives.make_derivative(staged, DerivativeKind.THUMBNAIL, source=image)
    except IntegrityError:  # a concurrent collect stored it first: drop our copy
        derivatives.delete_staged_image(staged)


def _data_removed(attempt: Attempt) -> bool:
    try:
        return gateway.get_prediction(attempt.prediction_id).data_removed
    except GatewayError:
        return False


def collect_outputs(attempt_id: int) -> Attempt:
    """Download and store every output of a succeeded prediction, then mark the attempt succeeded.

    Idempotent: does nothing unless the attempt is `collecting`, skips outputs already stored, and
    two concurrent runs store each output once. A download that may pass later leaves the attempt
    `collecting` (the poller runs it again); a refused one fails the attempt permanently.
    """
    attempt = Attempt.objects.select_related("job").get(pk=attempt_id)
    if attempt.state != S.COLLECTING:
        return attempt
    spec = get_spec(attempt.job.model_slug)
    urls = spec.outputs_as_list(attempt.output)
    if not urls:
        removed = _data_removed(attempt)
        message = DATA_REMOVED_MESSAGE if removed else "The prediction succeeded with no output."
        transitions.fail(attempt_id, message, PERMANENT)
        return Attempt.objects.get(pk=attempt_id)
    stored = set(attempt.images.values_list("index", flat=True))
    for index, url in enumerate(urls):
        if index in stored:
            continue
        try:
            _store(attempt, index, url, download(url))
        except DownloadRefused as exc:
            transitions.fail(attempt_id, f"Output {index + 1} was refused: {exc}", PERMANENT)
            return Attempt.objects.get(pk=attempt_id)
        except DownloadFailed as exc:
            if exc.status in (404, 410) and _data_removed(attempt):
                transitions.fail(attempt_id, DATA_REMOVED_MESSAGE, PERMANENT)
            else:
                logger.warning("Collect of attempt %s output %s will be retried: %s", attempt_id, index, exc)
            return Attempt.objects.get(pk=attempt_id)
    transitions.succeed(attempt_id, spec.actual_cost(len(urls)))
    return Attempt.objects.get(pk=attempt_id)
