"""Input builders: turn a staging request and a validated config into a model's Replicate input.

A builder places the image where its model wants it (a string or an array, under the model's own
field name), renders the prompt, and sends only the parameters the model takes. The result is
validated against the model's `…Input` schema by `registry.ModelSpec.build_input`, so a builder
cannot send a field the real model would answer 422 to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .schemas import (
    FluxKontextConfig,
    QwenImageEditConfig,
    QwenImageEditPlusConfig,
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
    """The config's model parameters as JSON, without the prompt template and unset optionals."""
    return config.model_dump(mode="json", exclude={"prompt_template"}, exclude_none=True)


def _with_seed(params: dict[str, Any], request: StagingRequest) -> dict[str, Any]:
    """Seed precedence: a seed fixed in the config wins over the request's seed."""
    if "seed" not in params and request.seed is not None:
        params["seed"] = request.seed
    return params


def build_flux_kontext(request: StagingRequest, config: FluxKontextConfig) -> dict[str, Any]:
    params = _with_seed(_params(config), request)
    return {"prompt": _prompt(request, config), "input_image": request.image_url, **params}


def build_qwen_image_edit(request: StagingRequest, config: QwenImageEditConfig) -> dict[str, Any]:
    params = _with_seed(_params(config), request)
    return {"prompt": _prompt(request, config), "image": request.image_url, **params}


def build_qwen_image_edit_plus(request: StagingRequest, config: QwenImageEditPlusConfig) -> dict[str, Any]:
    params = _with_seed(_params(config), request)
    return {"prompt": _prompt(request, config), "image": [request.image_url], **params}


def build_seedream(request: StagingRequest, config: SeedreamConfig) -> dict[str, Any]:
    """Seedream has no seed; width/height only go with size=custom, max_images only with auto."""
    params = _params(config)
    if config.size == SeedreamSize.CUSTOM:
        params.setdefault("width", 2048)
        params.setdefault("height", 2048)
    if config.sequential_image_generation != SeedreamSequential.AUTO:
        params.pop("max_images", None)
    return {"prompt": _prompt(request, config), "image_input": [request.image_url], **params}
