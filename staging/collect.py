"""Copying a succeeded prediction's outputs into our storage, before Replicate deletes them (1 h).

Downloads are refused unless `REPLICATE_OUTPUT_HOSTS` allows the URL's scheme, host and port: an entry
`host` (or `*.domain`) allows https on port 443 only; an entry `scheme://host:port` (the emulator's,
added by default when `REPLICATE_BASE_URL` is not Replicate's) allows exactly that origin, so plain http
to one host never opens its other ports. Redirects are followed by hand so each hop is checked; bodies
are capped while streaming and must decode as an image.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import ssl
import threading
from dataclasses import dataclass
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


DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class AllowedOrigin:
    """One `REPLICATE_OUTPUT_HOSTS` entry: a host pattern (`*.` wildcard) with the scheme and port it allows."""

    host: str
    scheme: str = "https"
    port: int = 443

    @classmethod
    def parse(cls, entry: str) -> AllowedOrigin | None:
        entry = entry.strip().lower()
        if not entry:
            return None
        if "://" not in entry and not entry.startswith("*.") and entry.count(":") == 1:
            entry = f"https://{entry}"  # host:port, https implied
        if "://" not in entry:
            return cls(host=entry.rstrip("."))
        try:
            parts = urlsplit(entry)
            port = parts.port or DEFAULT_PORTS.get(parts.scheme)
        except ValueError:
            return None
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname or port is None:
            return None
        return cls(host=parts.hostname.rstrip("."), scheme=parts.scheme, port=port)

    def matches_host(self, host: str) -> bool:
        if self.host.startswith("*."):
            return host.endswith(self.host[1:]) and host != self.host[2:]
        return host == self.host


def allowed_origins() -> list[AllowedOrigin]:
    return [origin for entry in settings.REPLICATE_OUTPUT_HOSTS if (origin := AllowedOrigin.parse(entry))]


def host_allowed(host: str) -> bool:
    """Whether any entry names this host (whatever scheme and port it allows)."""
    host = (host or "").lower().rstrip(".")
    return bool(host) and any(origin.matches_host(host) for origin in allowed_origins())


def check_url(url: str) -> None:
    """Refuse an output URL whose scheme, host and port no `REPLICATE_OUTPUT_HOSTS` entry allows."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise DownloadRefused("Output URL is not a valid URL.") from None
    host = (parts.hostname or "").lower().rstrip(".")
    scheme = parts.scheme.lower()
    port = port or DEFAULT_PORTS.get(scheme)
    listed = [origin for origin in allowed_origins() if host and origin.matches_host(host)]
    if not listed:
        raise DownloadRefused(f"output host {host or '(none)'!r} is not in REPLICATE_OUTPUT_HOSTS")
    if not any(origin.scheme == scheme and origin.port == port for origin in listed):
        allowed = ", ".join(sorted({f"{o.scheme}://{host}:{o.port}" for o in listed}))
        raise DownloadRefused(
            f"Output URL {scheme}://{host}:{port} is not allowed: REPLICATE_OUTPUT_HOSTS allows only {allowed} "
            "for this host (a plain host entry means https on port 443)."
        )


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context per process: loading the CA bundle costs ~20 ms of CPU, per client otherwise."""
    return ssl.create_default_context()


_local = threading.local()


def _client() -> httpx.Client:
    """One download client per thread, kept: its connections to the output host are reused.

    A client costs a few ms of CPU to build and a new connection per output otherwise (BENCHMARKS.md,
    own_cost). Every hop is still checked (`check_url`) before it is requested, so a pooled connection
    is only ever used for an allowed origin. Made again when the timeout setting changes (tests).
    """
    timeout = settings.STAGING_DOWNLOAD_TIMEOUT
    cached = getattr(_local, "client", None)
    if cached is None or cached[0] != timeout:
        client = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=5.0), follow_redirects=False, verify=_tls_context()
        )
        _local.client = cached = (timeout, client)
    return cached[1]


def download(url: str) -> bytes:
    """The bytes behind an output URL, with every safety check. Raises DownloadRefused/DownloadFailed."""
    cap = settings.STAGING_MAX_OUTPUT_BYTES
    client = _client()
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
