"""The schema adaptation for django-jsonform and the pydantic → ErrorMap mapping."""

from __future__ import annotations

import json

import pytest
from django_jsonform.constants import JOIN_SYMBOL
from django_jsonform.validators import JSONSchemaValidator

from models_config.jsonform import adapted_schema, map_errors
from models_config.registry import REGISTRY, get_spec


@pytest.mark.parametrize("slug", list(REGISTRY))
def test_adapted_schema_has_no_constructs_django_jsonform_breaks_on(slug: str) -> None:
    text = json.dumps(adapted_schema(slug))
    for construct in ('"$ref"', '"$defs"', '"anyOf"', '"additionalProperties"', '"null"'):
        assert construct not in text, construct
    schema = adapted_schema(slug)
    assert schema["type"] == "object"
    assert schema["title"] == get_spec(slug).title
    assert set(schema["properties"]) == set(get_spec(slug).config_schema.model_fields)
    for prop in schema["properties"].values():
        assert isinstance(prop["type"], str)  # never ["integer", "null"]
        assert "description" not in prop  # scalars show help_text only


def test_optional_enum_and_widget_are_adapted() -> None:
    props = adapted_schema("seedream-4")["properties"]
    # Optional[int] collapses to the int with its range, title and help text; no null default
    assert props["width"] == {
        "type": "integer",
        "minimum": 1024,
        "maximum": 4096,
        "title": "Width",
        "help_text": "Pixels; only with size 'custom' (then 2048 if empty).",
        "override": "per_job",
    }
    # the str Enum is inlined, keeping the field's own title and default
    assert props["size"]["enum"] == ["1K", "2K", "4K", "custom"]
    assert props["size"]["title"] == "Size"
    assert props["size"]["default"] == "2K"
    assert props["prompt_template"]["widget"] == "textarea"
    assert props["prompt_template"]["help_text"].startswith("Sent as the prompt.")


def test_each_call_returns_a_fresh_dict() -> None:
    first = adapted_schema("qwen-image-edit")
    first["properties"]["seed"]["required"] = True
    assert "required" not in adapted_schema("qwen-image-edit")["properties"]["seed"]


def test_defaults_pass_django_jsonforms_own_validator() -> None:
    for slug, spec in REGISTRY.items():
        JSONSchemaValidator(adapted_schema(slug))(spec.default_config().model_dump(mode="json"))  # raises if not


def test_map_errors_puts_field_errors_under_inputs_and_others_on_the_form() -> None:
    schema = {"properties": {"width": {}, "size": {}}}
    errors = [
        {"loc": ["width"], "msg": "too small"},
        {"loc": ["width"], "msg": "and odd"},
        {"loc": ["size", 0], "msg": "nested"},
        {"loc": [], "msg": "whole config"},
        {"loc": ["stale_key"], "msg": "Extra inputs are not permitted"},
    ]
    error_map, general = map_errors(errors, schema)
    assert error_map == {"width": ["too small", "and odd"], f"size{JOIN_SYMBOL}0": ["nested"]}
    assert general == ["whole config", "stale_key: Extra inputs are not permitted"]
