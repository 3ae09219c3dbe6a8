"""Classification of Replicate failures, and the gateway against the emulator."""

from __future__ import annotations

import pytest

from staging import gateway
from staging.emulation import emulator_settings
from staging.errors import (
    PERMANENT,
    TRANSIENT,
    GatewayError,
    ReplicateNotConfigured,
    classify_http_status,
    classify_prediction_error,
    parse_retry_after,
)


def test_parse_retry_after():
    assert parse_retry_after("Request was throttled. Your rate limit resets in ~30s.") == 30
    assert parse_retry_after("whatever", "12") == 12
    assert parse_retry_after("no hint") is None


@pytest.mark.parametrize(
    "status, error_class",
    [
        (429, TRANSIENT),
        (500, TRANSIENT),
        (502, TRANSIENT),
        (503, TRANSIENT),
        (400, PERMANENT),
        (401, PERMANENT),
        (402, PERMANENT),
        (404, PERMANENT),
        (422, PERMANENT),
    ],
)
def test_http_status_classes(status, error_class):
    error = classify_http_status(status, "detail")
    assert error.error_class == error_class
    assert error.message


@pytest.mark.parametrize(
    "text, error_class",
    [
        ("The input or output was flagged as sensitive. Please try again with different inputs. (E005)", PERMANENT),
        ("Director: unexpected error handling prediction (E6716)", TRANSIENT),
        ("Director: unexpected error handling prediction (E8765)", TRANSIENT),
        ("Director: unexpected error handling prediction (E9828)", TRANSIENT),
        ("Prediction interrupted; please retry (code: PA)", TRANSIENT),
        ("Something nobody has seen before", PERMANENT),
        (None, PERMANENT),
    ],
)
def test_prediction_error_classes(text, error_class):
    assert classify_prediction_error(text)[0] == error_class


def test_missing_token_is_a_clear_configuration_error(settings):
    settings.REPLICATE_API_TOKEN = ""
    with pytest.raises(ReplicateNotConfigured, match=r"REPLICATE_API_TOKEN.*emulator"):
        gateway.get_client()


def test_bad_token_is_permanent_and_never_echoed(emulator):
    with emulator_settings(emulator, REPLICATE_API_TOKEN="r8_wrong_secret_token"), pytest.raises(GatewayError) as info:
        gateway.create_prediction("qwen/qwen-image-edit", {"prompt": "x", "image": "https://x/y.jpg"}, None)
    assert info.value.status == 401 and not info.value.transient
    assert "r8_wrong_secret_token" not in str(info.value)


def test_invalid_input_is_permanent_422(emulator):
    with emulator_settings(emulator), pytest.raises(GatewayError) as info:
        gateway.create_prediction("black-forest-labs/flux-kontext-pro", {"prompt": "x", "output_format": "webp"}, None)
    assert info.value.status == 422 and not info.value.transient and "422" in str(info.value)


def test_429_carries_the_wait(emulator):
    emulator.set_faults(create_429=1, throttle_reset_seconds=7)
    with emulator_settings(emulator), pytest.raises(GatewayError) as info:
        gateway.create_prediction("qwen/qwen-image-edit", {"prompt": "x", "image": "https://x/y.jpg"}, None)
    assert info.value.transient and info.value.retry_after == 7
    assert emulator.counters()["creates_total"] == 0


def test_network_failures(settings):
    settings.REPLICATE_API_TOKEN = "r8_x"
    settings.REPLICATE_BASE_URL = "http://127.0.0.1:9"  # nothing listens: connection refused
    with pytest.raises(GatewayError) as info:
        gateway.create_prediction("qwen/qwen-image-edit", {"prompt": "x", "image": "https://x/y.jpg"}, None)
    assert info.value.transient and not info.value.ambiguous  # never connected: surely not created
    with pytest.raises(GatewayError) as info:
        gateway.get_prediction("abc")
    assert info.value.transient


def test_webhook_secret_is_fetched_and_cached(emulator):
    with emulator_settings(emulator):  # no REPLICATE_WEBHOOK_SECRET: fetched from the API
        assert gateway.webhook_secret() == emulator.webhook_secret
    with emulator_settings(emulator, REPLICATE_WEBHOOK_SECRET="whsec_configured"):
        assert gateway.webhook_secret() == "whsec_configured"
