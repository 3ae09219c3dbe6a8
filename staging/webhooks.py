"""The Replicate webhook: verify, deduplicate, apply forward-only, answer fast.

Answers: 400 malformed (missing headers, bad JSON), 401 bad/stale signature, 404 unknown attempt
token, 200 applied or duplicate. An unknown token gets 404 rather than a silent 200: the message was
signed with our secret, so it is Replicate telling us about a prediction we have no attempt for (a
deleted job or a restored database); a 404 shows up in Replicate's webhook log, and its redeliveries
are bounded and harmless. Collection is queued, never done inline. The signature and secret are
never logged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import time

from django.db import IntegrityError, transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from . import gateway, selectors, services
from .errors import GatewayError
from .models import WebhookDelivery

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


def _verify(request: HttpRequest, secret: str) -> str:
    """Verify; on a mismatch try a freshly fetched secret once, in case it was rotated."""
    try:
        return verify_signature(request.headers, request.body, secret)
    except SignatureError as exc:
        if exc.status != 401 or str(exc) != MISMATCH:
            raise
        try:
            fresh = gateway.webhook_secret(refresh=True)
        except GatewayError:
            raise exc from None
        if fresh == secret:
            raise
        return verify_signature(request.headers, request.body, fresh)


@csrf_exempt
@require_POST
def replicate_webhook(request: HttpRequest) -> JsonResponse:
    try:
        secret = gateway.webhook_secret()
    except GatewayError as exc:
        logger.error("Webhook rejected: cannot get the webhook secret: %s", exc)
        return JsonResponse({"error": "webhook secret unavailable"}, status=503)
    try:
        msg_id = _verify(request, secret)
    except SignatureError as exc:
        logger.warning("Webhook rejected (%s): %s", exc.status, exc)
        return JsonResponse({"error": str(exc)}, status=exc.status)
    try:
        prediction = gateway.Prediction.from_json(json.loads(request.body))
    except (ValueError, GatewayError):
        return JsonResponse({"error": "body is not a prediction object"}, status=400)

    attempt = selectors.attempt_by_token(gateway.attempt_token_from(request.get_full_path()))
    if attempt is None:
        logger.warning("Webhook %s for prediction %s names no known attempt", msg_id, prediction.id)
        return JsonResponse({"error": "unknown attempt"}, status=404)
    # One transaction: if applying fails, the delivery row goes too and Replicate's redelivery is applied.
    with transaction.atomic():
        try:
            with transaction.atomic():
                WebhookDelivery.objects.create(
                    webhook_id=msg_id[:100],
                    attempt=attempt,
                    prediction_id=prediction.id[:64],
                    status=prediction.raw_status[:20],
                )
        except IntegrityError:
            return JsonResponse({"ok": True, "duplicate": True})
        services.apply_prediction_update(prediction, attempt=attempt)
    return JsonResponse({"ok": True})
