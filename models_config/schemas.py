"""The pydantic schemas: the one source of truth for every model's parameters.

Each Replicate model has three classes built from one another so no range or enum is written twice:

- `…Params(ModelParams)`: the model's real tunable inputs with the ranges and defaults of
  `docs/replicate.md`, the cross-field rules that hold whatever the image is, and what those
  parameters make the model produce (`output_count`).
- `…Config(StagingConfig, …Params)`: what staff edit and the database stores: the params plus the
  staging-only settings (the prompt template), which never reach Replicate. Staging always sends an
  input image, so image-dependent rules hold here always.
- `…Input(…Params)`: the exact JSON body the real model accepts (params + prompt + image). The input
  builders' output and the emulator's request validation both go through it.

This module imports no Django, so the standalone Replicate emulator can use it.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

PROMPT_PLACEHOLDERS = ("room_type", "style", "instructions")

DEFAULT_PROMPT_TEMPLATE = (
    "Virtually stage this empty {room_type} with furniture and decor in a {style} style. "
    "{instructions} "
    "Keep the walls, windows, doors, floor, ceiling, lighting and camera position exactly unchanged; "
    "only add furniture and decor."
)


def error_fields(errors: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Pydantic errors (`exc.errors()`, or stored copies) as field path → message.

    The path is dotted ("image_input.0"); a rule about the whole model has no path and is named "config".
    """
    return {".".join(map(str, e["loc"])) or "config": e["msg"] for e in errors}


def describe_errors(errors: Iterable[Mapping[str, Any]]) -> str:
    """One line a person can act on: "field: message; other: message"."""
    return "; ".join(f"{field}: {msg}" for field, msg in error_fields(errors).items())


def field_errors(
    errors: ValidationError | Iterable[Mapping[str, Any]], prefix: Sequence[str | int] = ()
) -> list[dict[str, Any]]:
    """Pydantic errors as the `{"loc", "msg", "type"}` items every 422 answer and error list uses.

    `prefix` continues each `loc` from where the validated value sits (`("body", "config")` in a
    request). Only those three keys are kept: pydantic's `input` and `ctx` may echo what was sent.
    """
    items = errors.errors() if isinstance(errors, ValidationError) else errors
    return [{"loc": [*prefix, *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in items]


def _blank_to_none(value: Any) -> Any:
    """The admin form posts an unselected optional field as "": treat it as "not set"."""
    return None if value == "" else value


class StrictModel(BaseModel):
    """Unknown keys are errors: Replicate answers 422 for them, and a typo must not pass silently."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelParams(StrictModel):
    """A model's parameters: what its staging config and its Replicate input share."""

    def output_count(self) -> int:
        """Images one prediction returns with these parameters; a model returning several overrides it."""
        return 1


class StagingConfig(ModelParams):
    """The part every model's config shares: settings staging uses itself, tuned with the parameters.

    Every field declared here or on a staging-side subclass is staging-only (`staging_only_keys`):
    the input builders leave it out, so it can never reach Replicate's input. A concrete config mixes
    in its model's `…Params`, whose `output_count` it answers with.
    """

    prompt_template: str = Field(
        DEFAULT_PROMPT_TEMPLATE,
        title="Prompt template",
        min_length=10,
        max_length=4000,
        description=(
            "Sent as the prompt. Placeholders: {room_type}, {style}, {instructions} "
            "(the job's free-text instructions; empty when none)."
        ),
        json_schema_extra={"widget": "textarea"},
    )

    @field_validator("prompt_template")
    @classmethod
    def _known_placeholders(cls, value: str) -> str:
        try:
            fields = [name for _, name, _, _ in string.Formatter().parse(value) if name is not None]
        except ValueError as exc:
            raise PydanticCustomError(
                "prompt_template",
                "Unbalanced braces in the template ({error}); write {escaped} for literal braces.",
                {"error": str(exc), "escaped": "{{ and }}"},
            ) from None
        unknown = sorted({name for name in fields if name not in PROMPT_PLACEHOLDERS})
        if unknown:
            raise PydanticCustomError(
                "prompt_template",
                "Unknown placeholder(s) {unknown}; use only {allowed}.",
                {
                    "unknown": ", ".join("{" + name + "}" for name in unknown),
                    "allowed": ", ".join("{" + name + "}" for name in PROMPT_PLACEHOLDERS),
                },
            )
        return value

    @classmethod
    def staging_only_keys(cls) -> frozenset[str]:
        """The config's fields that none of its model's parameter classes (`…Params`) declares."""
        params: set[str] = set()
        for base in cls.__mro__:
            if issubclass(base, ModelParams) and not issubclass(base, StagingConfig):
                params.update(base.model_fields)
        return frozenset(set(cls.model_fields) - params)


SENTENCE_END = ".!?…"
CLOSERS = "\"')]\u201d\u2019\u00bb"  # closing quotes and brackets after a sentence's end


def as_sentence(text: str) -> str:
    """Free text as one sentence of a prompt, so it reads as such between the template's sentences.

    Trimmed, first letter capitalised, and a period added unless it already ends with terminal
    punctuation (possibly inside closing quotes or brackets); empty stays empty.
    """
    text = text.strip()
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    core = text.rstrip(CLOSERS)
    if not core or core[-1] not in SENTENCE_END:
        text += "."
    return text


def render_prompt(template: str, *, room_type: str, style: str, instructions: str = "") -> str:
    """Fill the template, instructions as a sentence; empty placeholders leave no double spaces behind."""
    text = template.format(room_type=room_type, style=style, instructions=as_sentence(instructions))
    return " ".join(text.split())


# --- FLUX.1 Kontext (pro and max share one interface) -------------------------------------------


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
    aspect_ratio: KontextAspectRatio = Field(KontextAspectRatio.MATCH_INPUT_IMAGE, title="Aspect ratio")
    output_format: KontextOutputFormat = Field(KontextOutputFormat.PNG, title="Output format")
    safety_tolerance: int = Field(
        2,
        ge=0,
        le=6,
        title="Safety tolerance",
        description="0 is the strictest. At most 2 when an input image is given, which staging always does.",
    )
    prompt_upsampling: bool = Field(False, title="Prompt upsampling")
    seed: int | None = Field(None, title="Seed", description="Fixed seed for repeatable results; empty for random.")

    _blank_seed = field_validator("seed", mode="before")(_blank_to_none)


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


# --- Qwen Image Edit ---------------------------------------------------------------------------


class QwenOutputFormat(StrEnum):
    WEBP = "webp"
    JPG = "jpg"
    PNG = "png"


class QwenImageEditParams(ModelParams):
    go_fast: bool = Field(True, title="Go fast", description="Faster predictions with some optimisations.")
    output_format: QwenOutputFormat = Field(QwenOutputFormat.WEBP, title="Output format")
    output_quality: int = Field(95, ge=0, le=100, title="Output quality", description="0 to 100; ignored for png.")
    disable_safety_checker: bool = Field(False, title="Disable safety checker")
    seed: int | None = Field(None, title="Seed", description="Fixed seed for repeatable results; empty for random.")

    _blank_seed = field_validator("seed", mode="before")(_blank_to_none)


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
    aspect_ratio: QwenPlusAspectRatio = Field(QwenPlusAspectRatio.MATCH_INPUT_IMAGE, title="Aspect ratio")


class QwenImageEditPlusConfig(StagingConfig, QwenImageEditPlusParams):
    """Qwen Image Edit Plus staging config."""


class QwenImageEditPlusInput(QwenImageEditPlusParams):
    prompt: str = Field(min_length=1)
    image: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)


# --- Seedream 4 --------------------------------------------------------------------------------


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
    size: SeedreamSize = Field(SeedreamSize.S2K, title="Size")
    aspect_ratio: SeedreamAspectRatio = Field(
        SeedreamAspectRatio.MATCH_INPUT_IMAGE, title="Aspect ratio", description="Ignored when size is custom."
    )
    width: int | None = Field(
        None, ge=1024, le=4096, title="Width", description="Pixels; only with size 'custom' (then 2048 if empty)."
    )
    height: int | None = Field(
        None, ge=1024, le=4096, title="Height", description="Pixels; only with size 'custom' (then 2048 if empty)."
    )
    sequential_image_generation: SeedreamSequential = Field(
        SeedreamSequential.DISABLED,
        title="Sequential image generation",
        description="'auto' lets the model return several related images.",
    )
    max_images: int = Field(
        1, ge=1, le=15, title="Max images", description="More than 1 only with sequential generation 'auto'."
    )
    enhance_prompt: bool = Field(True, title="Enhance prompt")

    _blank_sizes = field_validator("width", "height", mode="before")(_blank_to_none)

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
