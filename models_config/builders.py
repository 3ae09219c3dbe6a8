"""Input builders: turn a staging request and a validated config into a model's Replicate input.

A builder renders the prompt and sends only the parameters the model takes: never the config's
staging-only keys (`StagingConfig.staging_only_keys`). The registry adds the photo under the model's
own field (`ModelSpec.image_field`) and validates the result against the model's `…Input` schema
(`registry.ModelSpec.build_input`), so a builder cannot send a field the real model would answer 422
to. Most models need only `build_standard`; a model with rules of its own wraps it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .schemas import (
    SeedreamConfig,
    SeedreamSequential,
    SeedreamSize,
    StagingConfig,
    render_prompt,
)

# What a job asks for when it names no room type or style: the one definition (model field defaults,
# the jobs API, the `stage` command and `services.create_job` all read these).
DEFAULT_ROOM_TYPE = "room"
DEFAULT_STYLE = "modern"


@dataclass(frozen=True)
class StagingRequest:
    """What a job asks for, independent of the model."""

    image_url: str
    room_type: str = DEFAULT_ROOM_TYPE
    style: str = DEFAULT_STYLE
    instructions: str = ""
    seed: int | None = None


def _prompt(request: StagingRequest, config: StagingConfig) -> str:
    return render_prompt(
        config.prompt_template,
        room_type=request.room_type,
        style=request.style,
        instructions=request.instructions,
    )


def _params(config: StagingConfig) -> dict[str, Any]:
    """The config's model parameters as JSON, without staging-only keys and unset optionals."""
    return config.model_dump(mode="json", exclude=set(config.staging_only_keys()), exclude_none=True)


def build_standard(request: StagingRequest, config: StagingConfig) -> dict[str, Any]:
    """The prompt and the parameters; for a model with a seed, a seed fixed in the config wins over the request's."""
    params = _params(config)
    if "seed" in type(config).model_fields and "seed" not in params and request.seed is not None:
        params["seed"] = request.seed
    return {"prompt": _prompt(request, config), **params}


def build_seedream(request: StagingRequest, config: SeedreamConfig) -> dict[str, Any]:
    """Width/height only go with size=custom (2048 when unset), max_images only with sequential 'auto'."""
    payload = build_standard(request, config)
    if config.size == SeedreamSize.CUSTOM:
        payload.setdefault("width", 2048)
        payload.setdefault("height", 2048)
    if config.sequential_image_generation != SeedreamSequential.AUTO:
        payload.pop("max_images", None)
    return payload
