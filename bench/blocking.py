"""The seed's blocking design, one job at a time: the baseline the throughput and pipeline benchmarks
measure the service against (bench/README.md)."""

from __future__ import annotations

import io
from typing import Any

import httpx
import replicate

from models_config.builders import StagingRequest
from models_config.registry import ModelSpec


def stage_one(
    client: replicate.Client, http: httpx.Client, spec: ModelSpec, config: Any, photo: bytes, index: int, style: str
) -> bool:
    """Upload the photo, create the prediction, wait on it in this thread and download its outputs, as the
    seed's worker did; True when it succeeded."""
    upload = client.files.create(io.BytesIO(photo), filename=f"room{index}.jpg", content_type="image/jpeg")
    model_input = spec.build_input(StagingRequest(upload.urls["get"], "room", style), config)
    prediction = client.models.predictions.create(model=spec.ref, input=model_input)
    prediction.wait()
    if prediction.status != "succeeded":
        return False
    for url in spec.outputs_as_list(prediction.output):
        http.get(url).raise_for_status()
    return True
