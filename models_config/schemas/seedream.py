"""Seedream 4 (docs/replicate.md#models)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from .base import CHOICE, PER_JOB, ModelParams, StagingConfig, blank_to_none


class SeedreamSize(StrEnum):
    S1K = "1K"
    S2K = "2K"
    S4K = "4K"
    CUSTOM = "custom"


class SeedreamAspectRatio(StrEnum):
    MATCH_INPUT_IMAGE = "match_input_image"
    R1_1 = "1:1"
    R4_3 = "4:3"
    R3_4 = "3:4"
    R16_9 = "16:9"
    R9_16 = "9:16"
    R3_2 = "3:2"
    R2_3 = "2:3"
    R21_9 = "21:9"


class SeedreamSequential(StrEnum):
    DISABLED = "disabled"
    AUTO = "auto"


class SeedreamParams(ModelParams):
    size: SeedreamSize = Field(SeedreamSize.S2K, title="Size", json_schema_extra=PER_JOB, **CHOICE)
    aspect_ratio: SeedreamAspectRatio = Field(
        SeedreamAspectRatio.MATCH_INPUT_IMAGE,
        title="Aspect ratio",
        description="Ignored when size is custom.",
        json_schema_extra=PER_JOB,
        **CHOICE,
    )
    width: int | None = Field(
        None,
        ge=1024,
        le=4096,
        title="Width",
        description="Pixels; only with size 'custom' (then 2048 if empty).",
        json_schema_extra=PER_JOB,
    )
    height: int | None = Field(
        None,
        ge=1024,
        le=4096,
        title="Height",
        description="Pixels; only with size 'custom' (then 2048 if empty).",
        json_schema_extra=PER_JOB,
    )
    # Config only: several images multiply what a job costs.
    sequential_image_generation: SeedreamSequential = Field(
        SeedreamSequential.DISABLED,
        title="Sequential image generation",
        description="'auto' lets the model return several related images (each one is paid for).",
        **CHOICE,
    )
    max_images: int = Field(
        1, ge=1, le=15, title="Max images", description="More than 1 only with sequential generation 'auto'."
    )
    enhance_prompt: bool = Field(
        True, title="Enhance prompt", description="Lets the model rewrite the prompt (config only)."
    )

    _blank_sizes = field_validator("width", "height", mode="before")(blank_to_none)

    @field_validator("width", "height")
    @classmethod
    def _custom_size_only(cls, value: int | None, info: ValidationInfo) -> int | None:
        size = info.data.get("size")
        if value is not None and size is not None and size != SeedreamSize.CUSTOM:
            raise PydanticCustomError(
                "custom_size_only",
                "{name} can be set only when size is 'custom' (size is '{size}'); leave it empty.",
                {"name": str(info.field_name).capitalize(), "size": size.value},
            )
        return value

    @field_validator("max_images")
    @classmethod
    def _max_images_needs_auto(cls, value: int, info: ValidationInfo) -> int:
        mode = info.data.get("sequential_image_generation")
        if value > 1 and mode is not None and mode != SeedreamSequential.AUTO:
            raise PydanticCustomError(
                "max_images_needs_auto",
                "Max images above 1 needs sequential image generation 'auto' (it is '{mode}').",
                {"mode": mode.value},
            )
        return value

    def output_count(self) -> int:
        """Sequential 'auto' returns up to `max_images` images (an upper bound: the model may return fewer)."""
        return self.max_images if self.sequential_image_generation == SeedreamSequential.AUTO else 1


class SeedreamConfig(StagingConfig, SeedreamParams):
    """Seedream 4 staging config."""


class SeedreamInput(SeedreamParams):
    prompt: str = Field(min_length=1)
    image_input: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list, max_length=10)
