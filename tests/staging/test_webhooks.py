"""The webhook endpoint: only correctly signed, fresh messages for a known attempt change anything."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from replicate_emulator.webhooks import secret_bytes, sign
from staging.models import Attempt, WebhookDelivery
from tests.fixtures.pipeline import attempts

pytestmark = pytest.mark.django_db(transaction=True)
URL = "/webhooks/replicate/"
START = datetime.now(UTC)


@pytest.fixture
def submitted(pipeline, make_job):
    """An attempt whose prediction has finished at the emulator, but we have not heard yet."""
    job = make_job()
    [attempt] = attempts(job)
    prediction = pipeline.wait_for_prediction(attempt.prediction_id)
    assert prediction["status"] == "succeeded"
    return attempt, prediction


def post(client, body: str, *, token: str, headers: dict[str, str]):
    return client.post(f"{URL}?attempt={token}", data=body, content_type="application/json", headers=headers)


def signed(secret: str, body: str, *, msg_id: str = "msg_1", timestamp: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    signature = sign(secret_bytes(secret), msg_id, ts, body)
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": signature}


def test_valid_webhook_is_applied_once_and_duplicates_are_ignored(client, pipeline, submitted):
    attempt, prediction = submitted
    body = json.dumps(prediction)
    headers = signed(pipeline.webhook_secret, body)  # the secret is fetched from the API
    answers = [post(client, body, token=attempt.token, headers=headers) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [a.json().get("duplicate", False) for a in answers] == [False, True, True]
    attempt.refresh_from_db()
    assert attempt.state == "succeeded"
    assert WebhookDelivery.objects.count() == 1
    assert attempt.images.count() == 1


@pytest.mark.parametrize(
    "mutate, status",
    [
        (lambda h, s, b: {}, 400),  # no headers at all
        (lambda h, s, b: {k: v for k, v in h.items() if k != "webhook-signature"}, 400),
        (lambda h, s, b: {**h, "webhook-timestamp": "yesterday"}, 400),
        (lambda h, s, b: {**h, "webhook-signature": "v1,AAAA"}, 401),  # wrong signature
        (lambda h, s, b: {**h, "webhook-id": "msg_other"}, 401),  # signature of another message
        (lambda h, s, b: signed(s, "tampered"), 401),  # signature of a different body
        (lambda h, s, b: signed(s, b, timestamp=int(time.time()) - 600), 401),  # stale: a replay
        (lambda h, s, b: signed("whsec_" + "QUJD" * 8, b), 401),  # signed with another secret
    ],
)
def test_bad_webhooks_are_rejected_and_change_nothing(client, pipeline, submitted, mutate, status):
    attempt, prediction = submitted
    body = json.dumps(prediction)
    headers = mutate(signed(pipeline.webhook_secret, body), pipeline.webhook_secret, body)
    before = Attempt.objects.get(pk=attempt.pk)
    answer = post(client, body, token=attempt.token, headers=headers)
    assert answer.status_code == status
    after = Attempt.objects.get(pk=attempt.pk)
    assert (after.state, after.checked_at) == (before.state, before.checked_at)
    assert not WebhookDelivery.objects.exists()
    # The same message, correctly signed, is then accepted: the rejection was about the signature.
    assert post(client, body, token=attempt.token, headers=signed(pipeline.webhook_secret, body)).status_code == 200


def test_unknown_attempt_token_is_404_and_changes_nothing(client, pipeline, submitted):
    attempt, prediction = submitted
    body = json.dumps(prediction)
    answer = post(client, body, token="not-a-token", headers=signed(pipeline.webhook_secret, body))
    assert answer.status_code == 404
    attempt.refresh_from_db()
    assert attempt.state != "succeeded"
    assert not WebhookDelivery.objects.exists()


def test_configured_secret_is_used_without_asking_the_api(client, pipeline, submitted, settings):
    attempt, prediction = submitted
    settings.REPLICATE_WEBHOOK_SECRET = "whsec_" + "QUJD" * 8
    body = json.dumps(prediction)
    assert post(client, body, token=attempt.token, headers=signed(pipeline.webhook_secret, body)).status_code == 401
    answer = post(client, body, token=attempt.token, headers=signed(settings.REPLICATE_WEBHOOK_SECRET, body))
    assert answer.status_code == 200


def test_get_is_not_allowed(client, pipeline):
    assert client.get(URL).status_code == 405


def test_a_rotated_secret_is_fetched_again_at_most_once_a_minute(client, pipeline, submitted):
    from django.core.cache import cache

    from staging import gateway

    attempt, prediction = submitted
    body = json.dumps(prediction)
    key = (gateway.settings.REPLICATE_BASE_URL, gateway.settings.REPLICATE_API_TOKEN)
    old_secret = "whsec_" + "QUJD" * 8
    # The shared cache holds the secret from before a rotation, fetched just now: no refetch yet.
    with time_machine.travel(START, tick=False):
        cache.set(gateway._shared_secret_key(key), {"key": old_secret, "fetched_at": time.time()}, timeout=None)
        assert post(client, body, token=attempt.token, headers=signed(pipeline.webhook_secret, body)).status_code == 401
    # Older than a minute: the failing signature makes it fetch the current secret, and the message passes.
    with time_machine.travel(START + timedelta(seconds=120), tick=False):
        headers = signed(pipeline.webhook_secret, body, msg_id="msg_2")
        assert post(client, body, token=attempt.token, headers=headers).status_code == 200
    assert gateway.secret_cache[key][0] == pipeline.webhook_secret
    assert cache.get(gateway._shared_secret_key(key))["key"] == pipeline.webhook_secret
