"""The model registry: one line per supported Replicate model.

Adding a model is one schema pair in `schemas.py`, one builder in `builders.py` and one line in
`REGISTRY` below. Everything else (admin form, config API, emulator validation, pipeline) reads
from here. Like `schemas`, this module imports no Django.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from . import builders, schemas
from .builders import StagingRequest


class OutputShape(StrEnum):
    SINGLE = "single"  # `output` is one URL string
    LIST = "list"  # `output` is an array of URL strings


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
    input_schema: type[BaseModel]
    builder: Callable[[StagingRequest, Any], dict[str, Any]]
    output_shape: OutputShape
    price_per_image: Decimal  # USD, REPLICATE.md's anchor; used for cost estimates

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

    def build_input(self, request: StagingRequest, config: schemas.StagingConfig) -> dict[str, Any]:
        """The exact JSON input for Replicate, checked against the real model's input schema."""
        payload = self.builder(request, config)
        return self.input_schema.model_validate(payload).model_dump(mode="json", exclude_unset=True, exclude_none=True)

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
        builder=builders.build_qwen_image_edit,
        output_shape=OutputShape.LIST,
        price_per_image=Decimal("0.03"),
    ),
    ModelSpec(
        slug="qwen-image-edit-plus",
        ref="qwen/qwen-image-edit-plus",
        title="Qwen Image Edit Plus",
        config_schema=schemas.QwenImageEditPlusConfig,
        input_schema=schemas.QwenImageEditPlusInput,
        builder=builders.build_qwen_image_edit_plus,
        output_shape=OutputShape.LIST,
        price_per_image=Decimal("0.03"),
    ),
    ModelSpec(
        slug="flux-kontext-pro",
        ref="black-forest-labs/flux-kontext-pro",
        title="FLUX.1 Kontext [pro]",
        config_schema=schemas.FluxKontextConfig,
        input_schema=schemas.FluxKontextInput,
        builder=builders.build_flux_kontext,
        output_shape=OutputShape.SINGLE,
        price_per_image=Decimal("0.04"),
    ),
    ModelSpec(
        slug="flux-kontext-max",
        ref="black-forest-labs/flux-kontext-max",
        title="FLUX.1 Kontext [max]",
        config_schema=schemas.FluxKontextConfig,
        input_schema=schemas.FluxKontextInput,
        builder=builders.build_flux_kontext,
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
