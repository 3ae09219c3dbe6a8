"""FLUX.1 Kontext [pro] and [max]: one interface, so one set of schemas (docs/replicate.md#models)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from .base import CHOICE, MAX_SEED, PER_JOB, SAFETY, SEED_HELP, ModelParams, StagingConfig, blank_to_none


class KontextAspectRatio(StrEnum):
    MATCH_INPUT_IMAGE = "match_input_image"
    R1_1 = "1:1"
    R16_9 = "16:9"
    R9_16 = "9:16"
    R4_3 = "4:3"
    R3_4 = "3:4"
    R3_2 = "3:2"
    R2_3 = "2:3"
    R4_5 = "4:5"
    R5_4 = "5:4"
    R21_9 = "21:9"
    R9_21 = "9:21"
    R2_1 = "2:1"
    R1_2 = "1:2"


class KontextOutputFormat(StrEnum):
    JPG = "jpg"
    PNG = "png"


KONTEXT_MAX_TOLERANCE_WITH_IMAGE = 2


class FluxKontextParams(ModelParams):
    aspect_ratio: KontextAspectRatio = Field(
        KontextAspectRatio.MATCH_INPUT_IMAGE, title="Aspect ratio", json_schema_extra=PER_JOB, **CHOICE
    )
    output_format: KontextOutputFormat = Field(
        KontextOutputFormat.PNG, title="Output format", json_schema_extra=PER_JOB, **CHOICE
    )
    safety_tolerance: int = Field(
        2,
        ge=0,
        le=6,
        title="Safety tolerance",
        description="0 is the strictest. At most 2 when an input image is given, which staging always does.",
        json_schema_extra=SAFETY,
    )
    prompt_upsampling: bool = Field(
        False, title="Prompt upsampling", description="Lets the model rewrite the prompt (config only)."
    )
    seed: int | None = Field(None, title="Seed", description=SEED_HELP, ge=0, le=MAX_SEED, json_schema_extra=PER_JOB)

    _blank_seed = field_validator("seed", mode="before")(blank_to_none)


def _kontext_tolerance_error(value: int) -> PydanticCustomError:
    return PydanticCustomError(
        "safety_tolerance_with_image",
        "Safety tolerance must be at most {limit} when an input image is given (it is {value}).",
        {"limit": KONTEXT_MAX_TOLERANCE_WITH_IMAGE, "value": value},
    )


class FluxKontextConfig(StagingConfig, FluxKontextParams):
    """FLUX.1 Kontext [pro] / [max] staging config."""

    @field_validator("safety_tolerance")
    @classmethod
    def _tolerance_with_image(cls, value: int) -> int:
        if value > KONTEXT_MAX_TOLERANCE_WITH_IMAGE:
            raise _kontext_tolerance_error(value)
        return value


class FluxKontextInput(FluxKontextParams):
    prompt: str = Field(min_length=1)
    input_image: str | None = None

    @model_validator(mode="after")
    def _tolerance_with_image(self) -> FluxKontextInput:
        if self.input_image and self.safety_tolerance > KONTEXT_MAX_TOLERANCE_WITH_IMAGE:
            raise _kontext_tolerance_error(self.safety_tolerance)
        return self
