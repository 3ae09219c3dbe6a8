"""Correctly signed webhook bodies that are not a prediction, or too big to read: a JSON 4xx, nothing changed.

The signature only proves who sent the body, not that it has the right shape. Each body below is signed
with the configured secret, so only the prediction parser (`predictions.PredictionJson`, the same one that
reads the API's answers) stands between it and the database. After each refusal the same attempt
takes a well-formed message, which shows the refusal was about the body. On PostgreSQL the NUL cases
would otherwise reach the database and fail there.
"""

from __future__ import annotations

import json
import logging
import time

import pytest

from replicate_emulator.webhooks import secret_bytes, sign
from staging.models import Attempt, StagingJob, WebhookDelivery

pytestmark = pytest.mark.django_db
URL = "/webhooks/replicate/"
SECRET = "whsec_" + "c2VjcmV0LWtleS1mb3ItdGVzdHM="
PREDICTION_ID = "p1"


@pytest.fixture
def attempt(settings) -> Attempt:
    """An attempt whose prediction runs at Replicate; the webhook secret is configured (no API call)."""
    settings.REPLICATE_WEBHOOK_SECRET = SECRET
    settings.DEBUG = True  # where an unhandled error would answer with a traceback
    job = StagingJob.objects.create(photo="staging/originals/x/original.jpg", model_slug="flux-kontext-pro")
    return Attempt.objects.create(job=job, number=1, state=Attempt.State.SUBMITTED, prediction_id=PREDICTION_ID)


def signed_post(client, body: str, token: str, msg_id: str = "msg_1"):
    timestamp = int(time.time())
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret_bytes(SECRET), msg_id, timestamp, body),
    }
    return client.post(f"{URL}?attempt={token}", data=body, content_type="application/json", headers=headers)


def state_of(attempt: Attempt) -> tuple:
    fresh = Attempt.objects.get(pk=attempt.pk)
    return fresh.state, fresh.replicate_status, fresh.predict_time, fresh.error, fresh.output, fresh.checked_at


def good(**changes) -> dict:
    return {"id": PREDICTION_ID, "status": "processing", "metrics": {}, **changes}


# (body, field named in the answer's detail)
WRONG_SHAPES = [
    pytest.param(good(status=["succeeded"]), "status", id="status-a-list"),
    pytest.param(good(status=None), "status", id="status-null"),
    pytest.param(good(metrics={"predict_time": "1.5"}), "metrics.predict_time", id="predict-time-a-string"),
    pytest.param(good(metrics={"predict_time": -1}), "metrics.predict_time", id="predict-time-negative"),
    pytest.param(good(metrics=[1]), "metrics", id="metrics-a-list"),
    pytest.param(good(id=12345), "id", id="id-a-number"),
    pytest.param({"status": "processing"}, "id", id="id-missing"),
    pytest.param(good(id=""), "id", id="id-empty"),
    pytest.param(good(id="p" * 65), "id", id="id-longer-than-the-column"),
    pytest.param(good(id="p\x001"), "id", id="id-with-nul"),
    pytest.param(good(status="failed", error="bad\x00news"), "error", id="error-with-nul"),
    pytest.param(good(status="failed", error={"code": "E005"}), "error", id="error-an-object"),
    pytest.param(good(status="failed", error="\ud800"), "error", id="error-with-a-lone-surrogate"),
    pytest.param(good(status="succeeded", output={"url": "x"}), "output", id="output-an-object"),
    pytest.param(good(status="succeeded", output=[1, 2]), "output", id="output-numbers"),
    pytest.param(good(status="succeeded", output=["https://x/\x00"]), "output", id="output-with-nul"),
    pytest.param(good(status="succeeded", output="https://x/\udfff"), "output", id="output-with-a-lone-surrogate"),
    pytest.param(good(data_removed="yes"), "data_removed", id="data-removed-a-string"),
    pytest.param(good(input=["a"]), "input", id="input-a-list"),
    pytest.param(good(webhook=7), "webhook", id="webhook-a-number"),
    pytest.param(good(created_at="yesterday"), "created_at", id="created-at-not-a-date"),
    pytest.param(good(created_at="2025-01-01T00:00:00"), "created_at", id="created-at-without-a-zone"),
    pytest.param(["not", "an", "object"], "body", id="a-list"),
    pytest.param(None, "body", id="null"),
]


@pytest.mark.parametrize(("body", "field"), WRONG_SHAPES)
def test_a_signed_body_of_the_wrong_shape_is_400_and_changes_nothing(client, attempt, body, field) -> None:
    before = state_of(attempt)
    answer = signed_post(client, json.dumps(body), attempt.token)
    assert answer.status_code == 400
    detail = answer.json()["detail"]
    assert detail.startswith("Not a Replicate prediction object:")
    assert f" {field}: " in detail
    assert state_of(attempt) == before
    assert not WebhookDelivery.objects.exists()
    # The same attempt then takes a well-formed message: the refusal was about the body alone.
    answer = signed_post(client, json.dumps(good()), attempt.token, msg_id="msg_2")
    assert (answer.status_code, answer.json()) == (200, {"ok": True})
    assert Attempt.objects.get(pk=attempt.pk).state == Attempt.State.PROCESSING


@pytest.mark.parametrize(
    "body", ["{", "", "[" * 100_000, '{"id": "p1", "status": "processing"} trailing'], ids=str.__len__
)
def test_a_signed_body_that_is_not_json_is_400(client, attempt, body) -> None:
    before = state_of(attempt)
    answer = signed_post(client, body, attempt.token)
    assert (answer.status_code, answer.json()) == (400, {"detail": "The body is not JSON."})
    assert state_of(attempt) == before
    assert not WebhookDelivery.objects.exists()


def test_the_wrong_value_is_not_echoed(client, attempt) -> None:
    """The detail names the field and the rule, never the value (a body can carry a webhook URL's token)."""
    answer = signed_post(client, json.dumps(good(webhook=["https://x/?attempt=" + attempt.token])), attempt.token)
    assert answer.status_code == 400
    assert attempt.token not in answer.content.decode()


def test_an_unknown_status_string_is_accepted_and_ignored(client, attempt) -> None:
    """A status this code does not know yet is a well-formed prediction: heard, not applied."""
    before = state_of(attempt)
    answer = signed_post(client, json.dumps(good(status="paused")), attempt.token)
    assert answer.status_code == 200
    assert state_of(attempt) == before


@pytest.mark.parametrize("sign_it", [True, False], ids=["signed", "unsigned"])
def test_a_body_over_the_upload_limit_is_413_with_json(client, attempt, settings, sign_it) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps(good(logs="x" * 2000))
    before = state_of(attempt)
    if sign_it:
        answer = signed_post(client, body, attempt.token)
    else:
        answer = client.post(f"{URL}?attempt={attempt.token}", data=body, content_type="application/json")
    assert answer.status_code == 413
    assert answer["Content-Type"] == "application/json"
    assert "DATA_UPLOAD_MAX_MEMORY_SIZE" in answer.json()["detail"]
    assert state_of(attempt) == before
    assert not WebhookDelivery.objects.exists()


def test_the_default_limit_refuses_a_3_mb_body(client, attempt) -> None:
    answer = signed_post(client, json.dumps(good(logs="x" * 3_000_000)), attempt.token)
    assert answer.status_code == 413


def test_webhook_logs_name_the_attempt_by_id_never_by_token(client, attempt, caplog) -> None:
    caplog.set_level(logging.INFO)
    assert signed_post(client, json.dumps(good()), attempt.token).status_code == 200
    assert signed_post(client, json.dumps(good()), attempt.token).json() == {"ok": True, "duplicate": True}
    assert signed_post(client, json.dumps(good(status=[1])), attempt.token, msg_id="msg_3").status_code == 400
    webhook_lines = [r.getMessage() for r in caplog.records if r.name == "staging.webhooks"]
    assert any(f"(attempt {attempt.pk})" in line for line in webhook_lines)
    assert any(f"for attempt {attempt.pk} is a duplicate" in line for line in webhook_lines)
    assert attempt.token not in caplog.text
