"""Qwen Image Edit and Qwen Image Edit Plus (docs/replicate.md#models)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, field_validator

from .base import CHOICE, MAX_SEED, PER_JOB, SAFETY, SEED_HELP, ModelParams, StagingConfig, blank_to_none


class QwenOutputFormat(StrEnum):
    WEBP = "webp"
    JPG = "jpg"
    PNG = "png"


class QwenImageEditParams(ModelParams):
    go_fast: bool = Field(
        True, title="Go fast", description="Faster predictions with some optimisations.", json_schema_extra=PER_JOB
    )
    output_format: QwenOutputFormat = Field(
        QwenOutputFormat.WEBP, title="Output format", json_schema_extra=PER_JOB, **CHOICE
    )
    output_quality: int = Field(
        95, ge=0, le=100, title="Output quality", description="0 to 100; ignored for png.", json_schema_extra=PER_JOB
    )
    disable_safety_checker: bool = Field(False, title="Disable safety checker", json_schema_extra=SAFETY)
    seed: int | None = Field(None, title="Seed", description=SEED_HELP, ge=0, le=MAX_SEED, json_schema_extra=PER_JOB)

    _blank_seed = field_validator("seed", mode="before")(blank_to_none)


class QwenImageEditConfig(StagingConfig, QwenImageEditParams):
    """Qwen Image Edit staging config."""


class QwenImageEditInput(QwenImageEditParams):
    prompt: str = Field(min_length=1)
    image: str = Field(min_length=1)


class QwenPlusAspectRatio(StrEnum):
    MATCH_INPUT_IMAGE = "match_input_image"
    R1_1 = "1:1"
    R16_9 = "16:9"
    R9_16 = "9:16"
    R4_3 = "4:3"
    R3_4 = "3:4"


class QwenImageEditPlusParams(QwenImageEditParams):
    aspect_ratio: QwenPlusAspectRatio = Field(
        QwenPlusAspectRatio.MATCH_INPUT_IMAGE, title="Aspect ratio", json_schema_extra=PER_JOB, **CHOICE
    )


class QwenImageEditPlusConfig(StagingConfig, QwenImageEditPlusParams):
    """Qwen Image Edit Plus staging config."""


class QwenImageEditPlusInput(QwenImageEditPlusParams):
    prompt: str = Field(min_length=1)
    image: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
