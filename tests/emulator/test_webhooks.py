"""Signed webhook delivery (verified with the official client's validator), webhook faults and retention."""

from __future__ import annotations

import base64
import time

import httpx
import replicate
from replicate.webhook import WebhookSigningSecret

from tests.fixtures.photos import image_bytes
from tests.fixtures.waiting import wait_until

MODEL = "black-forest-labs/flux-kontext-pro"
INPUT = {"prompt": "stage", "input_image": "data:image/jpeg;base64," + base64.b64encode(image_bytes()).decode()}


def _create(client, receiver, events=None, attempt="att-1"):
    return client.models.predictions.create(
        model=MODEL, input=INPUT, webhook=f"{receiver.url}?attempt={attempt}", webhook_events_filter=events
    )


def _statuses(hooks):
    return [hook.json["status"] for hook in hooks]


def test_signed_start_and_completed(emulator, replicate_client, webhook_receiver):
    prediction = _create(replicate_client, webhook_receiver, ["start", "completed"])
    assert webhook_receiver.wait_for(lambda hooks: len(hooks) == 2)
    assert emulator.wait_for_webhooks()
    hooks = webhook_receiver.events_for(prediction.id)
    assert _statuses(hooks) == ["processing", "succeeded"]
    secret = replicate_client.webhooks.default.secret()
    for hook in hooks:
        # validate() returns None and raises on a bad signature or a stale timestamp
        replicate.webhooks.validate(headers=hook.headers, body=hook.body, secret=secret, tolerance=300)
        assert hook.json["webhook_events_filter"] == ["start", "completed"]
    assert hooks[1].json["output"].endswith(".png")
    assert len({hook.headers["webhook-id"] for hook in hooks}) == 2
    assert emulator.counters()["webhooks_sent"] == 2


def test_completed_only_sends_one_webhook(emulator, replicate_client, webhook_receiver):
    """What the service asks for (`gateway.WEBHOOK_EVENTS`): one message per prediction, at its end."""
    prediction = _create(replicate_client, webhook_receiver, ["completed"])
    emulator.wait_for_prediction(prediction.id)
    assert emulator.wait_for_webhooks()
    hooks = webhook_receiver.events_for(prediction.id)
    assert _statuses(hooks) == ["succeeded"]
    assert hooks[0].json["webhook_events_filter"] == ["completed"]
    assert emulator.counters()["webhooks_sent"] == 1


def test_default_filter_sends_every_event(emulator, replicate_client, webhook_receiver):
    prediction = _create(replicate_client, webhook_receiver)
    emulator.wait_for_prediction(prediction.id)
    assert webhook_receiver.wait_for(lambda hooks: len(hooks) == 4)
    hooks = webhook_receiver.events_for(prediction.id)
    assert _statuses(hooks) == ["processing", "processing", "processing", "succeeded"]
    assert hooks[2].json["output"] is not None  # the "output" event


def test_tampered_body_fails_validation(emulator, replicate_client, webhook_receiver):
    _create(replicate_client, webhook_receiver, ["completed"])
    assert webhook_receiver.wait_for(lambda hooks: len(hooks) == 1)
    hook = webhook_receiver.received[0]
    secret = WebhookSigningSecret(key=emulator.webhook_secret)
    try:
        replicate.webhooks.validate(headers=hook.headers, body=hook.body.replace("succeeded", "failed"), secret=secret)
    except replicate.webhook.InvalidSignatureError:
        pass
    else:
        raise AssertionError("a tampered body must not validate")


def test_redelivery_keeps_the_webhook_id(emulator, replicate_client, webhook_receiver):
    webhook_receiver.statuses.extend([500, 502])
    _create(replicate_client, webhook_receiver, ["completed"])
    assert webhook_receiver.wait_for(lambda hooks: len(hooks) == 3)
    assert emulator.wait_for_webhooks()
    ids = {hook.headers["webhook-id"] for hook in webhook_receiver.received}
    assert len(ids) == 1
    counters = emulator.counters()
    assert (counters["webhooks_sent"], counters["webhooks_failed"]) == (1, 0)


def test_delivery_gives_up_after_retries(emulator, replicate_client, webhook_receiver):
    webhook_receiver.statuses.extend([500] * 10)
    _create(replicate_client, webhook_receiver, ["completed"])
    assert webhook_receiver.wait_for(lambda hooks: len(hooks) == 4)  # 1 try + 3 redeliveries
    assert emulator.wait_for_webhooks()
    assert emulator.counters()["webhooks_failed"] == 1


def test_webhook_duplicate_shares_the_id(emulator, replicate_client, webhook_receiver):
    emulator.set_faults(webhook_duplicate=1)
    _create(replicate_client, webhook_receiver, ["completed"])
    assert webhook_receiver.wait_for(lambda hooks: len(hooks) == 2)
    first, second = webhook_receiver.received
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body
    assert emulator.counters()["faults_injected"] == {"webhook_duplicate": 1}


def test_webhook_lost(emulator, replicate_client, webhook_receiver):
    emulator.set_faults(webhook_lost=1)
    prediction = _create(replicate_client, webhook_receiver, ["start", "completed"])
    emulator.wait_for_prediction(prediction.id)
    assert emulator.wait_for_webhooks()
    assert _statuses(webhook_receiver.events_for(prediction.id)) == ["succeeded"]  # "start" was lost
    assert emulator.counters()["faults_injected"] == {"webhook_lost": 1}


def test_webhook_delay_does_not_block_the_api(emulator, replicate_client, webhook_receiver):
    emulator.set_faults(webhook_delay=0.5)
    prediction = _create(replicate_client, webhook_receiver, ["completed"])
    done_at = time.monotonic()
    emulator.wait_for_prediction(prediction.id)
    assert replicate_client.predictions.get(prediction.id).status == "succeeded"
    assert webhook_receiver.received == []
    assert webhook_receiver.wait_for(lambda hooks: len(hooks) == 1, timeout=3)
    assert time.monotonic() - done_at >= 0.5


def test_retention_removes_data():
    from replicate_emulator import Emulator

    with Emulator(api_token="t", latency=0.02, retention_seconds=0.3) as emu:
        client = replicate.Client(api_token="t", base_url=emu.base_url)
        prediction = client.models.predictions.create(model=MODEL, input=INPUT)
        data = emu.wait_for_prediction(prediction.id)
        output_url = data["output"]
        assert httpx.get(output_url).status_code == 200
        assert wait_until(lambda: emu.get_prediction(prediction.id)["data_removed"], timeout=3)
        prediction.reload()
        assert (prediction.output, prediction.input, prediction.status) == (None, {}, "succeeded")
        raw = httpx.get(f"{emu.base_url}/v1/predictions/{prediction.id}", headers={"Authorization": "Bearer t"})
        assert raw.json()["data_removed"] is True
        assert httpx.get(output_url).status_code == 404
