"""What every model's schemas share: the one formatter of pydantic errors, `Text`, the override scopes,
the strict base classes, and `StagingConfig`, the staging-only part of every config.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from .prompts import (
    DEFAULT_PROMPT_TEMPLATE,
    MAX_INSTRUCTIONS_CHARS,
    MAX_PROMPT_CHARS_CONTEXT,
    MAX_ROOM_TYPE_CHARS,
    MAX_STYLE_CHARS,
    describe_template_problems,
    longest_prompt_chars,
    template_problems,
    template_text,
)

MAX_SEED = 2**63 - 1  # StagingJob.seed is a BigIntegerField; a config's seed is bounded alike


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


def blank_to_none(value: Any) -> Any:
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
