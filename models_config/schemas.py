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

import re
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

PROMPT_PLACEHOLDERS = ("room_type", "style", "instructions")

# The longest text a job may carry (the jobs API refuses more): a template's worst-case prompt is
# measured with them, so a template that passes fits every job (docs/architecture.md#prompt-templates).
MAX_ROOM_TYPE_CHARS = 100
MAX_STYLE_CHARS = 100
MAX_INSTRUCTIONS_CHARS = 2000
MAX_SEED = 2**63 - 1  # StagingJob.seed is a BigIntegerField; a config's seed is bounded alike

# The validation context key under which the Django side passes STAGING_MAX_PROMPT_CHARS (this module
# reads no settings): with it, a template whose longest prompt is over the cap is refused.
MAX_PROMPT_CHARS_CONTEXT = "max_prompt_chars"

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


def reject_nul(value: str) -> str:
    """The one NUL rule for every stored text: PostgreSQL cannot store U+0000 in text or JSON."""
    if "\x00" in value:
        raise PydanticCustomError("string_nul", "NUL characters (U+0000) are not allowed in text.")
    return value


# A string without NUL characters: the type of every free-text field a request can store.
Text = Annotated[str, AfterValidator(reject_nul)]


class OverrideScope(StrEnum):
    """Who may set a config field in a job's override (docs/architecture.md#who-may-override-what).

    Marked on each field as `json_schema_extra={"override": …}`; a field without a mark is `CONFIG`,
    so a new field is closed to job creators until someone decides it is harmless per job.
    """

    PER_JOB = "per_job"  # anyone who may create the job: a choice about this job's output
    SAFETY = "safety"  # a safety filter: only who may change the model's config
    CONFIG = "config"  # the prompt, cost or anything else only who may change the model's config sets


def override_mark(scope: OverrideScope) -> dict[str, str]:
    """The `json_schema_extra` that marks a field's override scope (also shown in the JSON schema)."""
    return {"override": scope.value}


def override_scope(schema: type[BaseModel], key: str) -> OverrideScope:
    """The scope of one config key; unknown or unmarked keys are `CONFIG` (the closed default)."""
    field = schema.model_fields.get(key)
    extra = field.json_schema_extra if field is not None else None
    mark = extra.get("override") if isinstance(extra, dict) else None
    return OverrideScope(mark) if isinstance(mark, str) and mark in set(OverrideScope) else OverrideScope.CONFIG


def per_job_keys(schema: type[BaseModel]) -> list[str]:
    """The keys anyone who may create a job may override, in the schema's order."""
    return [key for key in schema.model_fields if override_scope(schema, key) is OverrideScope.PER_JOB]


def restricted_keys(schema: type[BaseModel], keys: Iterable[str]) -> list[str]:
    """Of `keys`, those only a person who may change the model's config may override."""
    return [key for key in keys if override_scope(schema, key) is not OverrideScope.PER_JOB]


def _blank_to_none(value: Any) -> Any:
    """The admin form posts an unselected optional field as "": treat it as "not set"."""
    return None if value == "" else value


class StrictModel(BaseModel):
    """Unknown keys are errors: Replicate answers 422 for them, and a typo must not pass silently."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# An enum field of a strict config: its JSON arrives as the value's string, which strict mode would
# refuse in Python mode (it wants the enum member); lax enum validation still takes only the values.
CHOICE = {"strict": False}
# The override marks of the model parameters below (see `OverrideScope`).
PER_JOB = override_mark(OverrideScope.PER_JOB)
SAFETY = override_mark(OverrideScope.SAFETY)
SEED_HELP = "Fixed seed for repeatable results (0 to 2^63-1); empty for random."


class ModelParams(StrictModel):
    """A model's parameters: what its staging config and its Replicate input share."""

    def output_count(self) -> int:
        """Images one prediction returns with these parameters; a model returning several overrides it."""
        return 1


# --- Prompt templates ---------------------------------------------------------------------------

# One token of a template's syntax: an escaped brace, a `{…}` with no brace inside, or a lone brace.
_TOKEN = re.compile(r"\{\{|\}\}|\{[^{}]*\}|[{}]")
_ESCAPES = {"{{": "{", "}}": "}"}
_SHOWN_PROBLEMS = 5  # a message lists this many problems at most
_SHOWN_TOKEN_CHARS = 40


class PromptError(ValueError):
    """A prompt that cannot be sent: a template that is not one, or a rendered prompt empty or too long."""


def template_problems(template: str) -> list[str]:
    """Each brace in `template` that is not `{room_type}`, `{style}`, `{instructions}`, `{{` or `}}`.

    Substitution is plain: no format specs (`{style:>9}`), conversions (`{style!r}`), attributes or
    indexes, since `str.format` would run those and could make a prompt of any size.
    """
    problems = []
    for match in _TOKEN.finditer(template):
        token = match.group()
        if token in _ESCAPES or token[1:-1] in PROMPT_PLACEHOLDERS:
            continue
        if len(token) == 1:
            problems.append(f"a lone '{token}' at character {match.start() + 1}")
        else:
            shown = token if len(token) <= _SHOWN_TOKEN_CHARS else token[: _SHOWN_TOKEN_CHARS - 2] + "…}"
            problems.append(shown)
    return problems


def describe_template_problems(problems: Sequence[str]) -> str:
    """One message for `template_problems`: what is allowed, and what was found instead."""
    found = ", ".join(problems[:_SHOWN_PROBLEMS])
    if len(problems) > _SHOWN_PROBLEMS:
        found += f" and {len(problems) - _SHOWN_PROBLEMS} more"
    allowed = ", ".join("{" + name + "}" for name in PROMPT_PLACEHOLDERS)
    return (
        f"Only the placeholders {allowed} may stand in braces, written exactly so (no format specs, conversions, "
        f"attributes or indexes); write {{{{ or }}}} for a literal brace. Found: {found}."
    )


def template_text(template: str) -> str:
    """The template's own text: placeholders left out, escaped braces as the braces they stand for."""
    return _TOKEN.sub(lambda match: _ESCAPES.get(match.group(), ""), template)


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
    """Fill the template by plain substitution, instructions as a sentence; no double spaces left behind.

    A value is inserted as it is, never read as template syntax. Raises `PromptError` for a template
    `template_problems` refuses (a validated config never has one).
    """
    problems = template_problems(template)
    if problems:
        raise PromptError(describe_template_problems(problems))
    values = {"room_type": room_type, "style": style, "instructions": as_sentence(instructions)}

    def fill(match: re.Match[str]) -> str:
        token = match.group()
        return _ESCAPES.get(token) or values[token[1:-1]]

    return " ".join(_TOKEN.sub(fill, template).split())


def longest_prompt_chars(template: str) -> int:
    """The length of `template`'s prompt for a job whose text fields are as long as a job's may be."""
    return len(
        render_prompt(
            template,
            room_type="x" * MAX_ROOM_TYPE_CHARS,
            style="x" * MAX_STYLE_CHARS,
            instructions="x" * MAX_INSTRUCTIONS_CHARS,
        )
    )


def check_prompt(prompt: str, max_chars: int) -> str:
    """A rendered prompt as it may be sent: not blank, at most `max_chars` (STAGING_MAX_PROMPT_CHARS) long."""
    if not prompt.strip():
        raise PromptError("The prompt is empty: the template needs text of its own besides the placeholders.")
    if len(prompt) > max_chars:
        raise PromptError(
            f"The prompt is {len(prompt)} characters long, over the limit of {max_chars} "
            "(STAGING_MAX_PROMPT_CHARS): shorten the instructions or the prompt template."
        )
    return prompt


class StagingConfig(ModelParams):
    """The part every model's config shares: settings staging uses itself, tuned with the parameters.

    Every field declared here or on a staging-side subclass is staging-only (`staging_only_keys`):
    the input builders leave it out, so it can never reach Replicate's input. A concrete config mixes
    in its model's `…Params`, whose `output_count` it answers with.

    Strict: a stored config is exactly what was meant, so `"yes"` is no boolean and `"2"`, `2.0` or
    `true` no integer. Enum fields opt out (`CHOICE`) so their JSON strings still validate.
    """

    model_config = ConfigDict(strict=True)

    prompt_template: Text = Field(
        DEFAULT_PROMPT_TEMPLATE,
        title="Prompt template",
        min_length=10,
        max_length=4000,
        description=(
            "Sent as the prompt. Placeholders: {room_type}, {style}, {instructions} "
            "(the job's free-text instructions; empty when none); {{ and }} for a literal brace."
        ),
        json_schema_extra={"widget": "textarea", **override_mark(OverrideScope.CONFIG)},
    )

    @field_validator("prompt_template")
    @classmethod
    def _valid_template(cls, value: str, info: ValidationInfo) -> str:
        """Syntax, a prompt that is never blank, and (given the cap) one that fits every job."""
        problems = template_problems(value)
        if problems:
            raise PydanticCustomError("prompt_template", "{message}", {"message": describe_template_problems(problems)})
        if not template_text(value).strip():
            raise PydanticCustomError(
                "prompt_template",
                "The template needs text of its own besides the placeholders: with no instructions "
                "the prompt would be blank.",
            )
        limit = (info.context or {}).get(MAX_PROMPT_CHARS_CONTEXT)
        longest = longest_prompt_chars(value) if limit is not None else 0
        if limit is not None and longest > limit:
            raise PydanticCustomError(
                "prompt_too_long",
                "With the longest job fields (room type {room}, style {style}, instructions {instructions} characters) "
                "the prompt would be {longest} characters, over the limit of {limit} (STAGING_MAX_PROMPT_CHARS): "
                "shorten the template or use each placeholder once.",
                {
                    "room": MAX_ROOM_TYPE_CHARS,
                    "style": MAX_STYLE_CHARS,
                    "instructions": MAX_INSTRUCTIONS_CHARS,
                    "longest": longest,
                    "limit": limit,
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
    aspect_ratio: QwenPlusAspectRatio = Field(
        QwenPlusAspectRatio.MATCH_INPUT_IMAGE, title="Aspect ratio", json_schema_extra=PER_JOB, **CHOICE
    )


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
