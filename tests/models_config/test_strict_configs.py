"""Configs are strict: no `"yes"` for true, no `true`, `"2"` or `2.0` for 2; enums still take their JSON strings.

Checked on every model's schema (every int and bool field), through the config API and the admin form,
which posts JSON with proper types (tests/models_config/test_admin_browser_types.py shows the browser's).
"""

from __future__ import annotations

import json
import types
import typing
from enum import Enum

import pytest
from django.test import Client
from pydantic import ValidationError

from models_config import services
from models_config.models import ModelConfigVersion
from models_config.registry import REGISTRY
from models_config.schemas import MAX_SEED, QwenImageEditConfig, QwenOutputFormat

from .conftest import SLUG

NOT_INTS = ["2", 2.0, True, "yes", None]
NOT_BOOLS = ["yes", "true", 1, 0, "1", None]


def kinds(schema) -> dict[str, type]:
    """Each field's type with an optional's None taken out."""
    found = {}
    for name, field in schema.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
            annotation = next(arg for arg in typing.get_args(annotation) if arg is not type(None))
        found[name] = annotation
    return found


def optional(schema, name: str) -> bool:
    return type(None) in typing.get_args(schema.model_fields[name].annotation)


def refused(schema, key: str, value) -> dict:
    with pytest.raises(ValidationError) as info:
        schema.model_validate({key: value})
    (error,) = info.value.errors()
    assert error["loc"] == (key,)
    return error


SCHEMAS = sorted({spec.config_schema for spec in REGISTRY.values()}, key=lambda schema: schema.__name__)
INT_FIELDS = [(s, n) for s in SCHEMAS for n, t in kinds(s).items() if t is int]
BOOL_FIELDS = [(s, n) for s in SCHEMAS for n, t in kinds(s).items() if t is bool]
ENUM_FIELDS = [(s, n, t) for s in SCHEMAS for n, t in kinds(s).items() if isinstance(t, type) and issubclass(t, Enum)]


def test_every_kind_of_field_is_covered() -> None:
    assert len(INT_FIELDS) >= 8 and len(BOOL_FIELDS) >= 6 and len(ENUM_FIELDS) >= 8


@pytest.mark.parametrize(("schema", "key"), INT_FIELDS, ids=lambda v: getattr(v, "__name__", v))
def test_int_fields_take_only_ints(schema, key) -> None:
    for value in NOT_INTS:
        if value is None and optional(schema, key):
            continue
        assert refused(schema, key, value)["type"] in ("int_type", "greater_than_equal")


@pytest.mark.parametrize(("schema", "key"), BOOL_FIELDS, ids=lambda v: getattr(v, "__name__", v))
def test_bool_fields_take_only_bools(schema, key) -> None:
    for value in NOT_BOOLS:
        assert refused(schema, key, value)["type"] == "bool_type"
    assert getattr(schema.model_validate({key: True}), key) is True


@pytest.mark.parametrize(("schema", "key", "enum"), ENUM_FIELDS, ids=lambda v: getattr(v, "__name__", v))
def test_enum_fields_take_their_json_strings_and_members_only(schema, key, enum) -> None:
    for member in enum:
        assert getattr(schema.model_validate({key: member.value}), key) is member  # as stored JSON has it
        assert getattr(schema.model_validate({key: member}), key) is member
    for value in (next(iter(enum)).value.upper() + "x", 1, True, None):
        assert refused(schema, key, value)["type"] == "enum"


def test_a_config_seed_is_bounded_like_a_jobs_seed() -> None:
    assert QwenImageEditConfig(seed=0).seed == 0
    assert QwenImageEditConfig(seed=MAX_SEED).seed == MAX_SEED
    assert refused(QwenImageEditConfig, "seed", -1)["type"] == "greater_than_equal"
    assert refused(QwenImageEditConfig, "seed", MAX_SEED + 1)["type"] == "less_than_equal"
    assert QwenImageEditConfig(seed="").seed is None  # the admin form's empty input still means unset


def test_stored_json_round_trips() -> None:
    for spec in REGISTRY.values():
        stored = json.loads(json.dumps(spec.default_config().model_dump(mode="json")))
        assert spec.config_schema.model_validate(stored) == spec.default_config()


# --- through the API and the admin form ---------------------------------------------------------

API = f"/api/v1/admin/models/{SLUG}/config"


def put(client: Client, config: dict):
    body = {"config": config, "comment": "types", "base_version": 1}
    return client.put(API, json.dumps(body), content_type="application/json")


def stored_versions() -> int:
    return ModelConfigVersion.objects.filter(model_config__slug=SLUG).count()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"go_fast": "yes"}, "go_fast"),
        ({"disable_safety_checker": 1}, "disable_safety_checker"),
        ({"output_quality": True}, "output_quality"),
        ({"output_quality": "80"}, "output_quality"),
        ({"output_quality": 80.0}, "output_quality"),
        ({"seed": 2**63}, "seed"),
        ({"seed": -5}, "seed"),
        ({"output_format": "PNG"}, "output_format"),
    ],
)
def test_config_put_refuses_coercions_with_422_and_stores_nothing(rows, editor_client, config, key) -> None:
    response = put(editor_client, config)
    assert response.status_code == 422, response.content
    assert [error["loc"] for error in response.json()["detail"]] == [["body", "config", key]]
    assert stored_versions() == 1


@pytest.mark.django_db
def test_config_put_with_proper_types_is_stored_as_sent(rows, editor_client) -> None:
    config = {"go_fast": False, "output_quality": 80, "output_format": "png", "seed": MAX_SEED}
    assert put(editor_client, config).status_code == 201
    stored = ModelConfigVersion.objects.get(model_config__slug=SLUG, number=2).config
    assert {key: stored[key] for key in config} == config
    assert services.selectors.get_active_config(SLUG).config.seed == MAX_SEED


@pytest.mark.django_db
def test_the_admin_form_refuses_a_string_for_an_int_and_saves_proper_types(rows, editor_client) -> None:
    row = rows[SLUG]
    url = f"/admin/models_config/modelconfig/{row.pk}/change/"
    config = services.get_spec(SLUG).default_config().model_dump(mode="json")

    bad = {**config, "output_quality": "80", "go_fast": "yes"}
    response = editor_client.post(url, {"config": json.dumps(bad), "comment": "typed", "base_version": "1"})
    assert response.status_code == 200 and response.context["adminform"].form.errors
    assert stored_versions() == 1

    good = {**config, "output_quality": 80, "go_fast": False, "seed": 12}
    response = editor_client.post(url, {"config": json.dumps(good), "comment": "typed", "base_version": "1"})
    assert response.status_code == 302
    stored = ModelConfigVersion.objects.get(model_config__slug=SLUG, number=2).config
    assert (stored["output_quality"], stored["go_fast"], stored["seed"]) == (80, False, 12)
    assert stored["output_format"] == QwenOutputFormat.WEBP.value
