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

The package is split by what it holds: `base` (the error formatter, `Text`, override scopes, the base
classes and `StagingConfig`), `prompts` (prompt templates and their limits) and one module per model
family (`flux_kontext`, `qwen`, `seedream`). Callers use `schemas.<name>`, so the names are gathered here.

This package imports no Django, so the standalone Replicate emulator can use it.
"""

from .base import (
    MAX_SEED,
    ModelParams,
    OverrideScope,
    StagingConfig,
    Text,
    describe_errors,
    field_errors,
    override_scope,
    per_job_keys,
    reject_nul,
    restricted_keys,
)
from .flux_kontext import FluxKontextConfig, FluxKontextInput
from .prompts import (
    DEFAULT_PROMPT_TEMPLATE,
    MAX_INSTRUCTIONS_CHARS,
    MAX_PROMPT_CHARS_CONTEXT,
    MAX_ROOM_TYPE_CHARS,
    MAX_STYLE_CHARS,
    PromptError,
    as_sentence,
    check_prompt,
    longest_prompt_chars,
    render_prompt,
)
from .qwen import (
    QwenImageEditConfig,
    QwenImageEditInput,
    QwenImageEditPlusConfig,
    QwenImageEditPlusInput,
    QwenOutputFormat,
)
from .seedream import SeedreamConfig, SeedreamInput, SeedreamSequential, SeedreamSize

__all__ = [
    "DEFAULT_PROMPT_TEMPLATE",
    "MAX_INSTRUCTIONS_CHARS",
    "MAX_PROMPT_CHARS_CONTEXT",
    "MAX_ROOM_TYPE_CHARS",
    "MAX_SEED",
    "MAX_STYLE_CHARS",
    "FluxKontextConfig",
    "FluxKontextInput",
    "ModelParams",
    "OverrideScope",
    "PromptError",
    "QwenImageEditConfig",
    "QwenImageEditInput",
    "QwenImageEditPlusConfig",
    "QwenImageEditPlusInput",
    "QwenOutputFormat",
    "SeedreamConfig",
    "SeedreamInput",
    "SeedreamSequential",
    "SeedreamSize",
    "StagingConfig",
    "Text",
    "as_sentence",
    "check_prompt",
    "describe_errors",
    "field_errors",
    "longest_prompt_chars",
    "override_scope",
    "per_job_keys",
    "reject_nul",
    "render_prompt",
    "restricted_keys",
]
