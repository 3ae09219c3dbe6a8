"""The config schemas hold the real parameters of docs/replicate.md#models and the cross-field rules."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from models_config.registry import REGISTRY
from models_config.schemas import (
    FluxKontextConfig,
    QwenImageEditConfig,
    QwenImageEditPlusConfig,
    SeedreamConfig,
    StagingConfig,
    as_sentence,
    render_prompt,
)
from models_config.services import ConfigValidationError, validate_config

SPECS = list(REGISTRY.values())
CONFIG_SCHEMAS = sorted({spec.config_schema for spec in SPECS}, key=lambda s: s.__name__)


def _errors(schema: type[StagingConfig], data: dict[str, Any]) -> list[dict[str, Any]]:
    with pytest.raises(ValidationError) as info:
        schema.model_validate(data)
    return info.value.errors()


def _bounded_int_fields(schema: type[StagingConfig]) -> list[tuple[str, int | None, int | None]]:
    """(name, ge, le) of every bounded integer field, read from the schema itself."""
    found = []
    for name, field in schema.model_fields.items():
        ge = next((m.ge for m in field.metadata if getattr(m, "ge", None) is not None), None)
        le = next((m.le for m in field.metadata if getattr(m, "le", None) is not None), None)
        if ge is not None or le is not None:
            found.append((name, ge, le))
    return found


@pytest.mark.parametrize("schema", CONFIG_SCHEMAS, ids=lambda s: s.__name__)
def test_defaults_validate_and_normalise_to_a_fixed_point(schema):
    dumped = schema().model_dump(mode="json")
    assert schema.model_validate(dumped).model_dump(mode="json") == dumped
    assert "{room_type}" in dumped["prompt_template"] and "{style}" in dumped["prompt_template"]
    assert "walls, windows" in dumped["prompt_template"] and "camera" in dumped["prompt_template"]


@pytest.mark.parametrize("schema", CONFIG_SCHEMAS, ids=lambda s: s.__name__)
def test_unknown_keys_are_rejected(schema):
    errors = _errors(schema, {"num_inference_steps": 30})
    assert errors[0]["type"] == "extra_forbidden"
    assert errors[0]["loc"] == ("num_inference_steps",)


@pytest.mark.parametrize("schema", CONFIG_SCHEMAS, ids=lambda s: s.__name__)
def test_wrong_types_are_rejected(schema):
    for name, field in schema.model_fields.items():
        if field.annotation is bool:
            assert _errors(schema, {name: "sometimes"})[0]["loc"] == (name,)
        if name == "prompt_template":
            assert _errors(schema, {name: 42})[0]["loc"] == (name,)
    enum_fields = [n for n, f in schema.model_fields.items() if hasattr(f.annotation, "__members__")]
    assert enum_fields, "every model has at least one enum parameter"
    for name in enum_fields:
        assert _errors(schema, {name: "not-a-choice"})[0]["type"] == "enum"


@pytest.mark.parametrize("schema", CONFIG_SCHEMAS, ids=lambda s: s.__name__)
def test_out_of_range_integers_are_rejected(schema):
    bounded = _bounded_int_fields(schema)
    assert bounded, "every model has a bounded integer parameter"
    base = {"size": "custom"} if schema is SeedreamConfig else {}
    if schema is SeedreamConfig:
        base["sequential_image_generation"] = "auto"
    for name, ge, le in bounded:
        if ge is not None:
            assert _errors(schema, {**base, name: ge - 1})[0]["loc"] == (name,)
        if le is not None:
            assert _errors(schema, {**base, name: le + 1})[0]["loc"] == (name,)


def test_real_replicate_facts():
    # The seed design's values that the real models answer 422 to.
    assert _errors(FluxKontextConfig, {"output_format": "webp"})[0]["loc"] == ("output_format",)
    assert FluxKontextConfig().safety_tolerance == 2
    assert QwenImageEditConfig().output_format == "webp" and QwenImageEditConfig().output_quality == 95
    assert SeedreamConfig().size == "2K" and "seed" not in SeedreamConfig.model_fields
    assert "aspect_ratio" not in QwenImageEditConfig.model_fields
    assert "aspect_ratio" in QwenImageEditPlusConfig.model_fields


def test_kontext_safety_tolerance_is_capped_with_an_input_image():
    errors = _errors(FluxKontextConfig, {"safety_tolerance": 3})
    assert errors[0]["loc"] == ("safety_tolerance",)
    assert "at most 2" in errors[0]["msg"]
    assert FluxKontextConfig(safety_tolerance=0).safety_tolerance == 0


def test_seedream_width_and_height_only_with_custom_size():
    for name in ("width", "height"):
        errors = _errors(SeedreamConfig, {name: 2048})
        assert errors[0]["loc"] == (name,)
        assert "custom" in errors[0]["msg"]
    config = SeedreamConfig(size="custom", width=3000, height=1024)
    assert (config.width, config.height) == (3000, 1024)


def test_seedream_max_images_above_one_only_with_auto():
    errors = _errors(SeedreamConfig, {"max_images": 2})
    assert errors[0]["loc"] == ("max_images",)
    assert "auto" in errors[0]["msg"]
    assert SeedreamConfig(sequential_image_generation="auto", max_images=4).max_images == 4


def test_blank_optional_values_from_the_admin_form_mean_unset():
    assert FluxKontextConfig(seed="").seed is None
    assert SeedreamConfig(size="custom", width="", height="").width is None


@pytest.mark.parametrize(
    ("template", "fragment"),
    [("Stage the {room} now", "Found: {room}."), ("Stage the {room_type now", "Found: a lone '{' at character 11.")],
)
def test_prompt_template_placeholders_are_checked(template, fragment):
    errors = _errors(QwenImageEditConfig, {"prompt_template": template})
    assert errors[0]["loc"] == ("prompt_template",)
    assert fragment in errors[0]["msg"]


def test_stored_json_is_normalised_with_defaults_filled_in():
    stored = validate_config("seedream-4", {"size": "4K"})
    assert stored == {**SeedreamConfig().model_dump(mode="json"), "size": "4K"}


def test_validate_config_reports_every_field_with_its_path():
    with pytest.raises(ConfigValidationError) as info:
        validate_config("flux-kontext-pro", {"safety_tolerance": 9, "aspect_ratio": "7:1", "bogus": 1})
    locs = {tuple(e["loc"]) for e in info.value.errors}
    assert locs == {("safety_tolerance",), ("aspect_ratio",), ("bogus",)}
    assert "safety_tolerance" in str(info.value)


@pytest.mark.parametrize("schema", CONFIG_SCHEMAS, ids=lambda s: s.__name__)
def test_the_prompt_template_is_the_only_staging_only_key_today(schema):
    assert schema.staging_only_keys() == {"prompt_template"}
    assert StagingConfig.staging_only_keys() == {"prompt_template"}


@pytest.mark.parametrize(
    ("instructions", "sentence"),
    [
        ("add a queen bed", "Add a queen bed."),
        ("  add a rug  ", "Add a rug."),
        ("Add a rug!", "Add a rug!"),
        ("is there room for a desk?", "Is there room for a desk?"),
        ("keep it light…", "Keep it light…"),
        ('label it "cosy."', 'Label it "cosy."'),
        ("add plants (two)", "Add plants (two)."),
        ("2 chairs", "2 chairs."),
        ("", ""),
        ("   ", ""),
    ],
)
def test_instructions_become_one_sentence(instructions, sentence):
    assert as_sentence(instructions) == sentence


def test_the_default_template_joins_the_instructions_as_a_sentence():
    def prompt(instructions: str) -> str:
        return render_prompt(
            StagingConfig().prompt_template, room_type="bedroom", style="modern", instructions=instructions
        )

    assert "modern style. Add a queen bed. Keep the walls" in prompt(" add a queen bed ")
    assert "modern style. Keep the walls" in prompt("")
    assert "  " not in prompt("") and "  " not in prompt("add a queen bed")
    assert render_prompt("{instructions}", room_type="r", style="s", instructions="a big rug") == "A big rug."
