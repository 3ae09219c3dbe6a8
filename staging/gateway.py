"""The one module that talks to Replicate, through the official `replicate` client 1.0.7.

Every call returns plain JSON dicts and raises only `GatewayError` (classified transient/permanent),
so the pipeline never sees `ReplicateError`, raw `httpx` exceptions or the client's pydantic models.

Why reads use `client._request` (raw JSON) instead of `client.predictions.get`: the client's
`Prediction` model drops `data_removed` and `webhook` (both needed: one to explain lost outputs, the
other to reconcile a lost create by its attempt token) and cannot parse the `aborted` status. Creates
go through the public `client.models.predictions.create` (never `run`, `Prefer: wait` or
`Cancel-After`). The client retries GETs on 429/503/504 by itself; POSTs (create, cancel, upload)
are never retried here: the pipeline decides, because a repeated create costs money.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import IO, Any

import httpx
import replicate
from django.conf import settings
from replicate.exceptions import ReplicateError

from .errors import TRANSIENT, GatewayError, ReplicateNotConfigured, classify_http_status

logger = logging.getLogger(__name__)

WEBHOOK_EVENTS = ["start", "completed"]

_local = threading.local()
_secret_lock = threading.Lock()
_secret_cache: dict[tuple[str, str], tuple[str, float]] = {}  # key -> (secret, fetched at)
SECRET_REFRESH_SECONDS = 60.0


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
        client = replicate.Client(api_token=token, base_url=settings.REPLICATE_BASE_URL, timeout=timeout)
        _local.client = (key, client)
        return client
    return cached[1]


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


def create_prediction(ref: str, model_input: dict[str, Any], webhook: str | None) -> dict[str, Any]:
    """Create one prediction of the official model `ref`; returns the prediction JSON.

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
    return prediction.dict()


def _get_json(path: str, action: str) -> dict[str, Any]:
    client = get_client()
    try:
        return client._request("GET", path).json()
    except ValueError as exc:
        raise GatewayError(f"Replicate sent an unreadable answer while trying to {action}.", TRANSIENT) from exc
    except Exception as exc:
        raise _translate(exc, action, may_have_happened=False) from None


def get_prediction(prediction_id: str) -> dict[str, Any]:
    """The raw prediction JSON (with `data_removed`, `webhook`, any status including `aborted`)."""
    return _get_json(f"/v1/predictions/{prediction_id}", "read a prediction")


def cancel_prediction(prediction_id: str) -> dict[str, Any] | None:
    """Ask Replicate to cancel; a prediction that already finished is not an error (returns None)."""
    client = get_client()
    try:
        return client._request("POST", f"/v1/predictions/{prediction_id}/cancel").json()
    except ReplicateError as exc:
        if exc.status in (404, 409, 422):
            return None
        raise _translate(exc, "cancel a prediction", may_have_happened=False) from None
    except Exception as exc:
        raise _translate(exc, "cancel a prediction", may_have_happened=False) from None


def iter_recent_predictions(max_pages: int = 5) -> Iterator[dict[str, Any]]:
    """Predictions newest first, as raw JSON, following the `next` cursor for at most `max_pages`."""
    path: str | None = "/v1/predictions"
    for _ in range(max_pages):
        if not path:
            return
        page = _get_json(path, "list predictions")
        yield from page.get("results") or []
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
    """`REPLICATE_WEBHOOK_SECRET`, else the account's secret fetched from the API and cached.

    `refresh` fetches it again (at most once a minute, so forged webhooks cannot make us hammer the
    API): a signature that fails against the cached secret may mean the secret was rotated.
    """
    if settings.REPLICATE_WEBHOOK_SECRET:
        return settings.REPLICATE_WEBHOOK_SECRET
    key = (settings.REPLICATE_BASE_URL, settings.REPLICATE_API_TOKEN)
    with _secret_lock:
        cached = _secret_cache.get(key)
        stale = refresh and cached is not None and time.monotonic() - cached[1] > SECRET_REFRESH_SECONDS
        if cached is None or stale:
            secret = _get_json("/v1/webhooks/default/secret", "fetch the webhook secret")["key"]
            cached = _secret_cache[key] = (secret, time.monotonic())
        return cached[0]
