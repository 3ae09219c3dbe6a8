"""The model registry: one line per supported Replicate model.

Adding a model is one schema module in `schemas/`, a builder in `builders.py` when `build_standard`
does not fit, and one line in `_SPECS` below. Everything else (admin form, config API, emulator,
pipeline, cost estimates) asks the model's `ModelSpec` what a config produces (how many images,
where the photo goes, what it costs) instead of restating it. Like `schemas`, this module imports
no Django.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any, get_args, get_origin

from . import builders, schemas
from .builders import StagingRequest


class OutputShape(StrEnum):
    SINGLE = "single"  # `output` is one URL string
    LIST = "list"  # `output` is an array of URL strings


class ImageShape(StrEnum):
    URL = "url"  # the input field holds one URL string
    LIST = "list"  # the input field holds an array of URL strings


class UnknownModelError(LookupError):
    """Raised for a slug that no registry line names."""

    def __init__(self, slug: str) -> None:
        super().__init__(f"Unknown model '{slug}'; known models: {', '.join(REGISTRY)}.")
        self.slug = slug


@dataclass(frozen=True)
class ModelSpec:
    slug: str
    ref: str  # Replicate "owner/name" of an official model
    title: str
    config_schema: type[schemas.StagingConfig]
    input_schema: type[schemas.ModelParams]
    builder: Callable[[StagingRequest, Any], dict[str, Any]]
    image_field: str  # the input field carrying the photo; its shape is read from `input_schema`
    output_shape: OutputShape
    price_per_image: Decimal  # USD, see docs/replicate.md; Replicate bills these models per output image

    def __post_init__(self) -> None:
        if self.image_field not in self.input_schema.model_fields:
            raise ValueError(f"{self.slug}: {self.input_schema.__name__} has no field '{self.image_field}'.")

    def default_config(self) -> schemas.StagingConfig:
        """The code defaults: the fallback when nothing usable is stored."""
        return self.config_schema()

    def resolve_config(
        self, stored: Mapping[str, Any] | None = None, override: Mapping[str, Any] | None = None
    ) -> schemas.StagingConfig:
        """Apply precedence: `override` (given with the request) > `stored` (active version) > defaults.

        Both layers are partial: keys missing from a layer fall through to the next one. Raises
        pydantic's `ValidationError` when the merged result is invalid.
        """
        merged: dict[str, Any] = {}
        merged.update(stored or {})
        merged.update(override or {})
        return self.config_schema.model_validate(merged)

    @property
    def image_shape(self) -> ImageShape:
        """Read from the input schema's annotation (`list[str]` or `str`), so the two cannot disagree."""
        annotation = self.input_schema.model_fields[self.image_field].annotation
        origins = {get_origin(annotation), *(get_origin(arg) for arg in get_args(annotation))}
        return ImageShape.LIST if list in origins else ImageShape.URL

    def place_image(self, url: str) -> dict[str, str | list[str]]:
        """The photo as the model takes it: `{image_field: url}` or `{image_field: [url]}`."""
        return {self.image_field: [url] if self.image_shape is ImageShape.LIST else url}

    def image_urls(self, model_input: Mapping[str, Any]) -> list[str]:
        """The photo URLs an input carries, in order (none for a text-only input)."""
        value = model_input.get(self.image_field)
        urls = [value] if isinstance(value, str) else list(value or [])
        return [str(url) for url in urls if url]

    def build_input(self, request: StagingRequest, config: schemas.StagingConfig) -> dict[str, Any]:
        """The exact JSON input for Replicate, checked against the real model's input schema."""
        payload = {**self.builder(request, config), **self.place_image(request.image_url)}
        return self.input_schema.model_validate(payload).model_dump(mode="json", exclude_unset=True, exclude_none=True)

    def output_count(self, values: schemas.ModelParams) -> int:
        """Images one prediction returns for a config or a validated input of this model.

        An upper bound where the model may return fewer (Seedream's sequential 'auto').
        """
        return values.output_count()

    def estimate_cost(self, config: schemas.StagingConfig) -> Decimal:
        """What one attempt with `config` costs at most, known before it is sent."""
        return self.actual_cost(self.output_count(config))

    def actual_cost(self, n_images: int) -> Decimal:
        """What a prediction that returned `n_images` images cost."""
        return self.price_per_image * n_images

    def outputs_as_list(self, output: Any) -> list[str]:
        """Normalise a prediction's `output` (one URL or an array of them) to a list of URLs."""
        if output is None:
            return []
        if isinstance(output, str):
            return [output]
        return [str(item) for item in output]


_SPECS = [
    ModelSpec(
        slug="qwen-image-edit",
        ref="qwen/qwen-image-edit",
        title="Qwen Image Edit",
        config_schema=schemas.QwenImageEditConfig,
        input_schema=schemas.QwenImageEditInput,
        builder=builders.build_standard,
        image_field="image",
        output_shape=OutputShape.LIST,
        price_per_image=Decimal("0.03"),
    ),
    ModelSpec(
        slug="qwen-image-edit-plus",
        ref="qwen/qwen-image-edit-plus",
        title="Qwen Image Edit Plus",
        config_schema=schemas.QwenImageEditPlusConfig,
        input_schema=schemas.QwenImageEditPlusInput,
        builder=builders.build_standard,
        image_field="image",
        output_shape=OutputShape.LIST,
        price_per_image=Decimal("0.03"),
    ),
    ModelSpec(
        slug="flux-kontext-pro",
        ref="black-forest-labs/flux-kontext-pro",
        title="FLUX.1 Kontext [pro]",
        config_schema=schemas.FluxKontextConfig,
        input_schema=schemas.FluxKontextInput,
        builder=builders.build_standard,
        image_field="input_image",
        output_shape=OutputShape.SINGLE,
        price_per_image=Decimal("0.04"),
    ),
    ModelSpec(
        slug="flux-kontext-max",
        ref="black-forest-labs/flux-kontext-max",
        title="FLUX.1 Kontext [max]",
        config_schema=schemas.FluxKontextConfig,
        input_schema=schemas.FluxKontextInput,
        builder=builders.build_standard,
        image_field="input_image",
        output_shape=OutputShape.SINGLE,
        price_per_image=Decimal("0.08"),
    ),
    ModelSpec(
        slug="seedream-4",
        ref="bytedance/seedream-4",
        title="Seedream 4",
        config_schema=schemas.SeedreamConfig,
        input_schema=schemas.SeedreamInput,
        builder=builders.build_seedream,
        image_field="image_input",
        output_shape=OutputShape.LIST,
        price_per_image=Decimal("0.03"),
    ),
]

REGISTRY: dict[str, ModelSpec] = {spec.slug: spec for spec in _SPECS}
BY_REF: dict[str, ModelSpec] = {spec.ref: spec for spec in _SPECS}


def get_spec(slug: str) -> ModelSpec:
    try:
        return REGISTRY[slug]
    except KeyError:
        raise UnknownModelError(slug) from None


def slugs() -> list[str]:
    return list(REGISTRY)
