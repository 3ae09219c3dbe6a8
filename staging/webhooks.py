"""The Replicate webhook: verify, deduplicate, apply forward-only, answer fast.

Answers, errors as JSON `{"detail": ...}`: 413 a body over `DATA_UPLOAD_MAX_MEMORY_SIZE`, 400 malformed
(missing headers, not JSON, or JSON that `predictions.Prediction` does not parse as a prediction: a field of
the wrong type), 401 bad/stale signature, 404 unknown attempt token, 200 applied or duplicate; a
refused message changes nothing. An unknown token gets 404 rather than a silent 200: the message was
signed with our secret, so it is Replicate telling us about a prediction we have no attempt for (a
deleted job or a restored database); a 404 shows up in Replicate's webhook log, and its redeliveries
are bounded and harmless. Collection is queued, never done inline. The signature, the secret and the
attempt token are never logged: log lines name the attempt by its id.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import time

from django.core.exceptions import RequestDataTooBig
from django.db import IntegrityError, transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from api.errors import body_too_big_detail

from . import gateway, selectors, services
from .errors import GatewayError
from .models import WebhookDelivery
from .predictions import Prediction

logger = logging.getLogger(__name__)
TOLERANCE_SECONDS = 300
MISMATCH = "signature does not match"


class SignatureError(Exception):
    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


def verify_signature(headers, body: bytes, secret: str, *, now: float | None = None) -> str:
    """Check a Standard Webhooks signature; returns the webhook id. Raises SignatureError."""
    msg_id = headers.get("webhook-id") or ""
    timestamp = headers.get("webhook-timestamp") or ""
    signatures = headers.get("webhook-signature") or ""
    if not (msg_id and timestamp and signatures):
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature header", 400)
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise SignatureError("webhook-timestamp is not a number", 400) from None
    if abs((now or time.time()) - sent_at) > TOLERANCE_SECONDS:
        raise SignatureError("webhook timestamp is outside the 5 minute tolerance")
    try:
        key = base64.b64decode(secret.split("_", 1)[1])
    except (IndexError, binascii.Error):
        raise SignatureError("the configured webhook secret is not a whsec_ secret", 500) from None
    expected = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    for entry in signatures.split():
        version, _, value = entry.partition(",")
        if version != "v1":
            continue
        try:
            candidate = base64.b64decode(value)
        except binascii.Error:
            continue
        if hmac.compare_digest(candidate, expected):
            return msg_id
    raise SignatureError(MISMATCH)


def _verify(request: HttpRequest, body: bytes, secret: str) -> str:
    """Verify; on a mismatch try a freshly fetched secret once, in case it was rotated."""
    try:
        return verify_signature(request.headers, body, secret)
    except SignatureError as exc:
        if exc.status != 401 or str(exc) != MISMATCH:
            raise
        try:
            fresh = gateway.webhook_secret(refresh=True)
        except GatewayError:
            raise exc from None
        if fresh == secret:
            raise
        return verify_signature(request.headers, body, fresh)


def _refuse(status: int, detail: str) -> JsonResponse:
    return JsonResponse({"detail": detail}, status=status)


@csrf_exempt
@require_POST
def replicate_webhook(request: HttpRequest) -> JsonResponse:
    """Every log line names the attempt by its id: its token is a credential (and is redacted from access logs)."""
    try:
        body = request.body
    except RequestDataTooBig:
        logger.warning("Webhook rejected (413): the body is over DATA_UPLOAD_MAX_MEMORY_SIZE")
        return _refuse(413, body_too_big_detail())
    try:
        secret = gateway.webhook_secret()
    except GatewayError as exc:
        logger.error("Webhook rejected: cannot get the webhook secret: %s", exc)
        return _refuse(503, "The webhook secret is unavailable; Replicate will deliver again.")
    try:
        msg_id = _verify(request, body, secret)
    except SignatureError as exc:
        logger.warning("Webhook rejected (%s): %s", exc.status, exc)
        return _refuse(exc.status, str(exc))
    try:
        prediction = Prediction.from_json(json.loads(body))
    except (ValueError, RecursionError):
        logger.warning("Webhook %s rejected (400): the body is not JSON", msg_id)
        return _refuse(400, "The body is not JSON.")
    except GatewayError as exc:  # JSON, but not a prediction: the same parser as every API answer says why
        logger.warning("Webhook %s rejected (400): %s", msg_id, exc)
        return _refuse(400, str(exc))

    attempt = selectors.attempt_by_token(gateway.attempt_token_from(request.get_full_path()))
    if attempt is None:
        logger.warning("Webhook %s for prediction %s names no known attempt", msg_id, prediction.id)
        return _refuse(404, "No attempt has this webhook URL's token.")
    # One transaction: if applying fails, the delivery row goes too and Replicate's redelivery is applied.
    with transaction.atomic():
        try:
            with transaction.atomic():
                WebhookDelivery.objects.create(
                    webhook_id=msg_id[:100],
                    attempt=attempt,
                    prediction_id=prediction.id,
                    status=prediction.raw_status[:20],
                )
        except IntegrityError:
            logger.info("Webhook %s for attempt %s is a duplicate; ignored", msg_id, attempt.pk)
            return JsonResponse({"ok": True, "duplicate": True})
        services.apply_prediction_update(prediction, attempt=attempt)
    logger.info(
        "Webhook %s: prediction %s is %s (attempt %s)", msg_id, prediction.id, prediction.raw_status, attempt.pk
    )
    return JsonResponse({"ok": True})
