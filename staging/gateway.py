"""The one module that talks to Replicate, through the official `replicate` client 1.0.7.

Every prediction JSON it gets (a create's answer, a read, a list page) is parsed once by
`predictions.Prediction.from_json` into a typed object, and every call raises only `GatewayError`
(classified transient/permanent), so the pipeline never sees `ReplicateError`, raw `httpx` exceptions,
the client's pydantic models or a raw dict. See docs/replicate.md for the API facts this relies on.

Why reads use `client._request` (raw JSON) instead of `client.predictions.get`: the client's
`Prediction` model drops `data_removed` and `webhook` (both needed: one to explain lost outputs, the
other to reconcile a lost create by its attempt token) and cannot parse the `aborted` status. Creates
go through the public `client.models.predictions.create` (never `run`, `Prefer: wait` or
`Cancel-After`). The client retries GETs on 429/503/504 by itself; POSTs (create, cancel, upload)
are never retried here: the pipeline decides, because a repeated create costs money.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import IO, Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import replicate
from django.conf import settings
from django.core.cache import cache
from replicate.exceptions import ReplicateError

from .errors import (
    TRANSIENT,
    GatewayError,
    ListTruncated,
    ReplicateNotConfigured,
    clamp_wait,
    classify_http_status,
)
from .models import Attempt
from .predictions import Prediction

logger = logging.getLogger(__name__)

# Only the end of a prediction is acted on: a `start` message would only move the attempt from submitted
# to processing, which changes nothing the pipeline does, at a second request per job
# (docs/replicate.md#delivery). A lost `completed` is covered by the poller.
WEBHOOK_EVENTS = ["completed"]

_local = threading.local()
_secret_lock = threading.Lock()
# (API base URL, token) -> (secret, time.time() when this process last read it from the shared cache or the
# API): the per-process copy in front of the shared one. Public so tests can start empty.
secret_cache: dict[tuple[str, str], tuple[str, float]] = {}
SECRET_REFRESH_SECONDS = 60.0
# How long a process trusts its own copy before reading the shared cache again: a secret the daily
# refresh fetched in a queue worker reaches every web process within this (docs/operations.md#the-webhook-secret).
SECRET_SHARED_READ_SECONDS = 5.0


# --- The webhook URL: how a prediction names the attempt it belongs to (docs/replicate.md#webhooks) ---

WEBHOOK_PATH = "/webhooks/replicate/"
TOKEN_PARAM = "attempt"


def webhook_url_for(attempt: Attempt) -> str | None:
    """Where Replicate should report this attempt's progress; None without a public URL (poll instead).

    The attempt's unguessable token rides in the URL, so a webhook, and a prediction listed by
    reconcile, name their attempt without trusting anything else in the body.
    """
    if not settings.STAGING_PUBLIC_URL:
        return None
    return f"{settings.STAGING_PUBLIC_URL}{WEBHOOK_PATH}?{urlencode({TOKEN_PARAM: attempt.token})}"


def attempt_token_from(url: str) -> str:
    """The attempt token carried by a webhook URL (or a request path with its query); "" when none."""
    return parse_qs(urlsplit(url or "").query).get(TOKEN_PARAM, [""])[0]


def require_configured() -> str:
    """The Replicate API token; `ReplicateNotConfigured` when none is set (staging then starts no work).

    The one "is Replicate configured" check: the jobs API, `services.create_job` and `get_client` ask here.
    """
    token = settings.REPLICATE_API_TOKEN
    if not token:
        raise ReplicateNotConfigured()
    return token


def get_client() -> replicate.Client:
    """A client per thread (httpx clients are not shared across threads), rebuilt when settings change."""
    token = require_configured()
    key = (token, settings.REPLICATE_BASE_URL, settings.STAGING_REPLICATE_TIMEOUT)
    cached = getattr(_local, "client", None)
    if cached is None or cached[0] != key:
        timeout = httpx.Timeout(settings.STAGING_REPLICATE_TIMEOUT, connect=5.0)
        transport = RetryAfterClamp(httpx.HTTPTransport())
        client = replicate.Client(
            api_token=token, base_url=settings.REPLICATE_BASE_URL, timeout=timeout, transport=transport
        )
        _local.client = (key, client)
        return client
    return cached[1]


class RetryAfterClamp(httpx.BaseTransport):
    """Clamps a numeric `Retry-After` before the client's retry layer sleeps on it.

    The client retries a GET answered 429/503/504 after sleeping for any digits `Retry-After` names: a
    huge value would hold the worker for years or raise `OverflowError` in `time.sleep`. Here it becomes
    at most one request's timeout (and STAGING_MAX_RETRY_AFTER_SECONDS): a read Replicate wants delayed
    longer is given up, and the next poll or reconcile reads again.
    """

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        named = (response.headers.get("Retry-After") or "").strip()
        if named.isdigit():
            limit = min(clamp_wait(float(named)), settings.STAGING_REPLICATE_TIMEOUT)
            response.headers["Retry-After"] = str(int(limit))
        return response

    def close(self) -> None:
        self.inner.close()


def _translate(exc: Exception, action: str, *, may_have_happened: bool) -> GatewayError:
    """Classify an exception of the client. `may_have_happened`: the request is a non-idempotent POST."""
    if isinstance(exc, ReplicateError):
        return classify_http_status(exc.status or 0, exc.detail or exc.title or "")
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        # Never connected: the request surely did not reach Replicate.
        return GatewayError(
            f"Could not connect to Replicate to {action} ({type(exc).__name__}); retrying later.", TRANSIENT
        )
    if isinstance(exc, httpx.HTTPError):
        return GatewayError(
            f"The connection to Replicate failed while trying to {action} ({type(exc).__name__}).",
            TRANSIENT,
            ambiguous=may_have_happened,
        )
    raise exc


def create_prediction(ref: str, model_input: dict[str, Any], webhook: str | None) -> Prediction:
    """Create one prediction of the official model `ref`.

    A `GatewayError` with `ambiguous=True` means the prediction may exist anyway: reconcile, do not
    create again.
    """
    client = get_client()
    kwargs: dict[str, Any] = {"model": ref, "input": model_input}
    if webhook:
        kwargs.update(webhook=webhook, webhook_events_filter=WEBHOOK_EVENTS)
    try:
        prediction = client.models.predictions.create(**kwargs)
    except Exception as exc:
        raise _translate(exc, "create a prediction", may_have_happened=True) from None
    return Prediction.from_json(prediction.dict())


def _get_json(path: str, action: str) -> dict[str, Any]:
    client = get_client()
    try:
        data = client._request("GET", path).json()
    except ValueError as exc:
        raise GatewayError(f"Replicate sent an unreadable answer while trying to {action}.", TRANSIENT) from exc
    except Exception as exc:
        raise _translate(exc, action, may_have_happened=False) from None
    if not isinstance(data, dict):
        raise GatewayError(f"Replicate sent an unexpected answer while trying to {action}.", TRANSIENT)
    return data


def get_prediction(prediction_id: str) -> Prediction:
    """A prediction read raw (with `data_removed`, `webhook`, any status including `aborted`)."""
    return Prediction.from_json(_get_json(f"/v1/predictions/{prediction_id}", "read a prediction"))


def cancel_prediction(prediction_id: str) -> None:
    """Ask Replicate to cancel; a prediction that already finished is not an error."""
    client = get_client()
    try:
        client._request("POST", f"/v1/predictions/{prediction_id}/cancel")
    except ReplicateError as exc:
        if exc.status in (404, 409, 422):
            return
        raise _translate(exc, "cancel a prediction", may_have_happened=False) from None
    except Exception as exc:
        raise _translate(exc, "cancel a prediction", may_have_happened=False) from None


def cancel_quietly(prediction_id: str) -> None:
    """Cancel to stop paying for a prediction nobody will use; a failure is logged, never raised."""
    try:
        cancel_prediction(prediction_id)
    except GatewayError as exc:
        logger.warning("Could not cancel prediction %s: %s", prediction_id, exc)


def iter_recent_predictions(max_pages: int | None = None) -> Iterator[Prediction]:
    """Predictions newest first, following the `next` cursor as long as the caller keeps reading.

    At most `max_pages` pages (default STAGING_RECONCILE_MAX_PAGES) are read: a caller that wants more
    once they are used up gets `ListTruncated` (the list goes on, unread), never a silent end that would
    look like "not listed".
    """
    limit = settings.STAGING_RECONCILE_MAX_PAGES if max_pages is None else max_pages
    path: str | None = "/v1/predictions"
    read = 0
    while path:
        if read >= limit:
            raise ListTruncated(f"Replicate's prediction list goes on past the {limit} page(s) read.", TRANSIENT)
        page = _get_json(path, "list predictions")
        read += 1
        for item in page.get("results") or []:
            try:
                yield Prediction.from_json(item)
            except GatewayError:
                logger.warning("Skipped an unreadable entry of Replicate's prediction list")
        path = page.get("next")


def upload_file(fileobj: IO[bytes], filename: str, content_type: str) -> str:
    """Upload through the Files API; returns the URL to pass as a model input."""
    client = get_client()
    try:
        created = client.files.create(fileobj, filename=filename, content_type=content_type)
    except Exception as exc:
        raise _translate(exc, "upload the photo", may_have_happened=False) from None
    return created.urls["get"]


def webhook_secret(*, refresh: bool = False) -> str:
    """`REPLICATE_WEBHOOK_SECRET`, else the account's secret fetched from the API, kept in the shared cache.

    Every process reads the one copy in Django's cache (the database's, or Redis), through a copy of its
    own trusted for `SECRET_SHARED_READ_SECONDS`, so a secret fetched anywhere (the daily refresh in a queue
    worker, another web process) is used everywhere within seconds, while a process reads the cache at most
    once per `SECRET_SHARED_READ_SECONDS` however many webhooks arrive.
    `refresh` (a signature failed: the secret may have been rotated) takes a newer secret another process
    stored, else fetches it again, at most once a minute across all processes, so forged webhooks cannot
    make us hammer the API.
    """
    if settings.REPLICATE_WEBHOOK_SECRET:
        return settings.REPLICATE_WEBHOOK_SECRET
    key = (settings.REPLICATE_BASE_URL, settings.REPLICATE_API_TOKEN)
    with _secret_lock:
        now = time.time()
        local = secret_cache.get(key)
        if local is not None and not refresh and now - local[1] < SECRET_SHARED_READ_SECONDS:
            return local[0]
        shared = _read_shared_secret(key)
        if shared is not None:
            secret, fetched_at = shared
            newer_elsewhere = local is None or secret != local[0]
            if not refresh or newer_elsewhere or now - fetched_at <= SECRET_REFRESH_SECONDS:
                secret_cache[key] = (secret, now)
                return secret
        elif local is not None and now - local[1] <= SECRET_REFRESH_SECONDS:
            return local[0]  # no shared copy (the cache is unreachable): at most one fetch a minute here
        return _store_secret(key, _fetch_secret())


def _shared_secret_key(key: tuple[str, str]) -> str:
    """The cache key names the account by a hash: the API token itself never reaches the cache."""
    digest = hashlib.sha256("\n".join(key).encode()).hexdigest()[:32]
    return f"staging:webhook-secret:{digest}"


def _read_shared_secret(key: tuple[str, str]) -> tuple[str, float] | None:
    """The shared copy and when it was fetched; None when absent, malformed, or the cache is unreachable
    (then the API is asked, as before there was a shared copy)."""
    try:
        value = cache.get(_shared_secret_key(key))
    except Exception:
        logger.warning("The shared cache is unreachable: fetching the webhook secret from Replicate.")
        return None
    if not isinstance(value, dict):
        return None
    secret, fetched_at = value.get("key"), value.get("fetched_at")
    if not isinstance(secret, str) or not secret or not isinstance(fetched_at, int | float):
        return None
    return secret, float(fetched_at)


def _store_secret(key: tuple[str, str], secret: str) -> str:
    """Keep a freshly fetched secret in this process and in the shared cache (no expiry: the daily refresh
    and failed signatures replace it)."""
    now = time.time()
    secret_cache[key] = (secret, now)
    try:
        cache.set(_shared_secret_key(key), {"key": secret, "fetched_at": now}, timeout=None)
    except Exception:
        logger.warning("The shared cache is unreachable: the webhook secret is kept in this process only.")
    return secret


def _fetch_secret() -> str:
    answer = _get_json("/v1/webhooks/default/secret", "fetch the webhook secret")
    secret = answer.get("key") if isinstance(answer, dict) else None
    if not isinstance(secret, str) or not secret:
        raise GatewayError("Replicate's webhook secret answer has no key.", TRANSIENT)
    return secret


def refresh_webhook_secret() -> str:
    """Fetch the account's webhook secret again into the shared cache (the daily schedule).

    Web processes pick it up from there within `SECRET_SHARED_READ_SECONDS`, so a rotated secret is in use
    before a webhook signed with it is refused once. Returns a line for the task result that never
    contains the secret itself.
    """
    if settings.REPLICATE_WEBHOOK_SECRET:
        return "REPLICATE_WEBHOOK_SECRET is set: nothing to fetch."
    key = (settings.REPLICATE_BASE_URL, settings.REPLICATE_API_TOKEN)
    secret = _fetch_secret()
    with _secret_lock:
        previous = _read_shared_secret(key) or secret_cache.get(key)
        _store_secret(key, secret)
    changed = previous is not None and previous[0] != secret
    return "Webhook secret fetched" + (" (it changed)." if changed else ".")
