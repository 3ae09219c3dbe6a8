"""Every fault kind, set from Python, over HTTP and (in test_cli) on the command line; and the counters."""

from __future__ import annotations

import base64

import httpx
import pytest
from replicate.exceptions import ReplicateError

from replicate_emulator import E005, E6716
from tests.fixtures.photos import image_bytes

MODEL = "qwen/qwen-image-edit"
DATA_URI = "data:image/jpeg;base64," + base64.b64encode(image_bytes()).decode()


def _create(client, attempt: str | None = None, **kwargs):
    webhook = f"http://127.0.0.1:9/webhooks/replicate/?attempt={attempt}" if attempt is not None else None
    return client.models.predictions.create(
        model=MODEL, input={"prompt": "stage", "image": DATA_URI}, webhook=webhook, **kwargs
    )


@pytest.mark.parametrize(("kind", "status"), [("create_429", 429), ("create_500", 500), ("create_503", 503)])
def test_create_status_faults_hit_the_next_n_creates_only(emulator, replicate_client, kind, status):
    emulator.set_faults(**{kind: 2})
    for _ in range(2):
        with pytest.raises(ReplicateError) as info:
            _create(replicate_client, "t")
        assert info.value.status == status
    assert _create(replicate_client, "t").status == "starting"
    counters = emulator.counters()
    assert counters["creates_total"] == 1
    assert counters["faults_injected"] == {kind: 2}


def test_429_body_quotes_the_reset_time(emulator):
    emulator.set_faults(create_429=1, throttle_reset_seconds=7)
    response = httpx.post(
        f"{emulator.base_url}/v1/models/{MODEL}/predictions",
        json={"input": {"prompt": "p", "image": DATA_URI}},
        headers={"Authorization": f"Bearer {emulator.api_token}"},
    )
    assert response.status_code == 429
    assert response.json() == {
        "detail": "Request was throttled. Your rate limit resets in ~7s.",
        "status": 429,
        "title": "Too Many Requests",
    }


def test_drop_after_create_creates_but_never_answers(emulator, replicate_client):
    emulator.set_faults(drop_after_create=1)
    with pytest.raises(httpx.TransportError):
        _create(replicate_client, "dropped")
    assert emulator.creates_for_token("dropped") == 1
    (prediction,) = replicate_client.predictions.list().results
    assert emulator.wait_for_prediction(prediction.id)["status"] == "succeeded"
    assert _create(replicate_client, "dropped").status == "starting"  # the fault cleared itself
    assert emulator.creates_for_token("dropped") == 2


def test_fail_predictions_uses_the_real_director_error(emulator, replicate_client):
    emulator.set_faults(fail_predictions=1)
    failed, ok = _create(replicate_client), _create(replicate_client)
    failed_json = emulator.wait_for_prediction(failed.id)
    assert (failed_json["status"], failed_json["error"], failed_json["output"]) == ("failed", E6716, None)
    assert failed_json["metrics"]["predict_time"] >= 0
    assert emulator.wait_for_prediction(ok.id)["status"] == "succeeded"


def test_fail_error_is_configurable(emulator, replicate_client):
    emulator.set_faults(fail_predictions=1, fail_error="Prediction interrupted; please retry (code: PA)")
    prediction = _create(replicate_client)
    assert emulator.wait_for_prediction(prediction.id)["error"] == "Prediction interrupted; please retry (code: PA)"


def test_moderate(emulator, replicate_client):
    emulator.set_faults(moderate=1)
    prediction = _create(replicate_client)
    data = emulator.wait_for_prediction(prediction.id)
    assert (data["status"], data["error"]) == ("failed", E005)
    assert emulator.counters()["faults_injected"] == {"moderate": 1}


def test_latency_and_jitter(emulator, replicate_client):
    emulator.set_faults(latency=0.6, jitter=0.2)
    prediction = _create(replicate_client)
    assert emulator.get_prediction(prediction.id)["status"] == "starting"
    data = emulator.wait_for_prediction(prediction.id, timeout=5)
    assert data["status"] == "succeeded"
    assert 0.4 <= data["metrics"]["predict_time"] <= 1.0


def test_create_rate_limit_answers_429_with_the_real_reset(emulator, replicate_client):
    emulator.set_faults(create_rate_limit=2)
    _create(replicate_client, "a")
    _create(replicate_client, "b")
    with pytest.raises(ReplicateError) as info:
        _create(replicate_client, "c")
    assert info.value.status == 429
    assert "resets in ~" in info.value.detail
    seconds = int(info.value.detail.split("~")[1].rstrip("s."))
    assert 55 <= seconds <= 60
    assert emulator.counters()["creates_total"] == 2
    assert emulator.counters()["faults_injected"] == {"create_rate_limit": 1}


def test_probability_form(emulator, replicate_client):
    emulator.set_faults(create_500_rate=1.0)
    with pytest.raises(ReplicateError):
        _create(replicate_client)
    emulator.set_faults(create_500_rate=0.0, fail_rate=1.0)
    prediction = _create(replicate_client)
    assert emulator.wait_for_prediction(prediction.id)["error"] == E6716


def test_faults_over_http_need_no_token(emulator, replicate_client):
    response = httpx.post(f"{emulator.base_url}/_emulator/faults", json={"create_503": 1})
    assert response.status_code == 200 and response.json()["create_503"] == 1
    assert httpx.get(f"{emulator.base_url}/_emulator/faults").json()["create_503"] == 1
    with pytest.raises(ReplicateError) as info:
        _create(replicate_client)
    assert info.value.status == 503
    bad = httpx.post(f"{emulator.base_url}/_emulator/faults", json={"create_999": 1})
    assert bad.status_code == 400 and "unknown fault" in bad.json()["detail"]
    assert httpx.post(f"{emulator.base_url}/_emulator/faults", json={"fail_rate": 2}).status_code == 400


def test_set_faults_rejects_bad_values(emulator):
    for bad in ({"create_429": -1}, {"create_429": "x"}, {"nope": 1}, {"fail_rate": 1.5}, {"create_500": True}):
        with pytest.raises(ValueError):
            emulator.set_faults(**bad)


def test_counters_per_token_and_model_and_reset(emulator, replicate_client):
    _create(replicate_client, "tok-1")
    _create(replicate_client, "tok-1")
    _create(replicate_client, "tok-2")
    _create(replicate_client)
    counters = httpx.get(f"{emulator.base_url}/_emulator/counters").json()
    assert counters["creates_total"] == 4
    assert counters["creates_by_token"] == {"tok-1": 2, "tok-2": 1, "": 1}
    assert counters["creates_by_model"] == {MODEL: 4}
    assert emulator.creates_for_token("tok-1") == 2
    assert emulator.creates_for_token("unknown") == 0
    assert set(counters) == {
        "creates_total",
        "creates_by_token",
        "creates_by_model",
        "webhooks_sent",
        "webhooks_failed",
        "faults_injected",
    }

    emulator.set_faults(create_429=5)
    assert httpx.post(f"{emulator.base_url}/_emulator/reset").status_code == 200
    assert emulator.counters()["creates_total"] == 0
    assert replicate_client.predictions.list().results == []
    assert _create(replicate_client).status == "starting"  # faults cleared too


def test_rejected_creates_are_not_counted(emulator, replicate_client):
    emulator.set_faults(create_429=1, create_500=1)
    for _ in range(2):
        with pytest.raises(ReplicateError):
            _create(replicate_client, "x")
    assert emulator.creates_for_token("x") == 0
