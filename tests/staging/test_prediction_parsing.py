"""`predictions.Prediction.from_json`: the one parser of every prediction JSON, read, listed or posted by webhook.

A real prediction parses with everything the pipeline reads; one of the wrong shape is refused with the
fields named (never their values), as a transient `GatewayError` for an API answer, which the webhook
answers 400 (tests/staging/test_webhook_shapes.py).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from staging import gateway
from staging.errors import TRANSIENT, GatewayError
from staging.predictions import Prediction, PredictionStatus

REPLICATE_ANSWER = {
    "id": "rrr4z55ocneqzikepnug6xezpe",
    "model": "black-forest-labs/flux-kontext-pro",
    "version": "hidden",
    "input": {"prompt": "Stage it", "input_image": "https://x/p.jpg"},
    "logs": "",
    "output": "https://replicate.delivery/xezq/out.jpg",
    "data_removed": False,
    "error": None,
    "status": "succeeded",
    "created_at": "2025-03-01T10:00:00.765994657Z",
    "started_at": "2025-03-01T10:00:01.1Z",
    "completed_at": "2025-03-01T10:00:05Z",
    "urls": {"get": "https://api.replicate.com/v1/predictions/rrr4z55ocneqzikepnug6xezpe"},
    "metrics": {"predict_time": 4.2, "total_time": 5.0, "image_count": 1},
    "webhook": "https://staging.example/webhooks/replicate/?attempt=tok",
    "webhook_events_filter": ["start", "completed"],
}


def test_a_replicate_prediction_parses_with_what_the_pipeline_reads() -> None:
    prediction = Prediction.from_json(REPLICATE_ANSWER)
    assert prediction == Prediction(
        id="rrr4z55ocneqzikepnug6xezpe",
        status=PredictionStatus.SUCCEEDED,
        raw_status="succeeded",
        output="https://replicate.delivery/xezq/out.jpg",
        error=None,
        predict_time=4.2,
        data_removed=False,
        webhook="https://staging.example/webhooks/replicate/?attempt=tok",
        model="black-forest-labs/flux-kontext-pro",
        input={"prompt": "Stage it", "input_image": "https://x/p.jpg"},
        created_at=datetime(2025, 3, 1, 10, 0, 0, 765994, tzinfo=UTC),
    )


def test_the_fields_a_fresh_prediction_leaves_out_or_null_take_their_defaults() -> None:
    prediction = Prediction.from_json(
        {"id": "p", "status": "starting", "output": None, "metrics": None, "webhook": None, "model": None}
    )
    assert (prediction.output, prediction.predict_time, prediction.webhook, prediction.model) == (None, None, "", "")
    assert (prediction.created_at, prediction.input, prediction.data_removed) == (None, None, False)
    assert prediction.running


def test_an_integer_predict_time_and_a_list_output_are_the_wire_shapes_too() -> None:
    prediction = Prediction.from_json({"id": "p", "status": "succeeded", "metrics": {"predict_time": 3}, "output": []})
    assert (prediction.predict_time, prediction.output) == (3.0, [])


def test_an_unknown_status_is_kept_raw_and_known_to_be_unknown() -> None:
    prediction = Prediction.from_json({"id": "p", "status": "queued_at_the_edge"})
    assert (prediction.status, prediction.raw_status) == (None, "queued_at_the_edge")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"status": ["succeeded"]}, "status"),
        ({"metrics": {"predict_time": "4.2"}}, "metrics.predict_time"),
        ({"metrics": {"predict_time": float("inf")}}, "metrics.predict_time"),
        ({"id": 7}, "id"),
        ({"data_removed": 1}, "data_removed"),
        ({"output": {"url": "x"}}, "output"),
        ({"input": "prompt"}, "input"),
        ({"error": 5}, "error"),
        ({"created_at": 1700000000.5, "id": "x" * 65}, "id"),
    ],
)
def test_a_field_of_the_wrong_type_is_refused_not_coerced(changes: dict, field: str) -> None:
    with pytest.raises(GatewayError) as info:
        Prediction.from_json({**REPLICATE_ANSWER, **changes})
    assert info.value.error_class == TRANSIENT  # from a read: Replicate may answer properly next time
    assert f" {field}: " in str(info.value)
    assert "attempt=tok" not in str(info.value)  # values are never echoed


def test_an_api_read_goes_through_the_same_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gateway, "_get_json", lambda path, action: {**REPLICATE_ANSWER, "status": ["x"]})
    with pytest.raises(GatewayError, match="status: Input should be a valid string"):
        gateway.get_prediction("rrr4z55ocneqzikepnug6xezpe")


def test_a_list_page_skips_what_does_not_parse_and_keeps_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    page = {"results": [{"id": 1, "status": "succeeded"}, REPLICATE_ANSWER], "next": None}
    monkeypatch.setattr(gateway, "_get_json", lambda path, action: page)
    assert [p.id for p in gateway.iter_recent_predictions()] == ["rrr4z55ocneqzikepnug6xezpe"]
